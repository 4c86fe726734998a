"""The state directory journal: an append-only record of every change the applier makes.

One file per target (``<state_dir>/host.journal``, ``<state_dir>/netns-<name>.journal``), JSON lines:

    {"op": "begin", "txn": ID, "profile": ..., "reason": ..., "time": ...}
    {"op": "set", "txn": ID, "knob": ..., "old": ..., "new": ...}      before the sysctl is written
    {"op": "file", "txn": ID, "path": ..., "previous": base64 | null}  before the file is replaced
    {"op": "commit" | "abort" | "rolledback", "txn": ID}

Each line is fsynced before the change it announces is made, so a process killed at any moment
leaves no change the journal does not know; a trailing partial line (killed while writing it) announces
a change that was never made and is ignored. A transaction is *outstanding* until it is aborted (its
changes were undone at once) or rolled back; rollback undoes outstanding ones newest first, whether
they were committed or cut short by a crash. A lock file serialises appliers of one target.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuner.apply.target import Target
from tuner.errors import KnobError, StateError
from tuner.inputs import parse_json
from tuner.knobs import CATALOGUE, Value
from tuner.logs import get_logger
from tuner.profiles import atomic_write
from tuner.trusted import check_owner_mode, ensure_dir, open_nofollow, read_limited

__all__ = ["FileStep", "Journal", "SetStep", "Transaction", "ensure_state_dir"]

log = get_logger(__name__)

OUTSTANDING = ("open", "committed")
MAX_JOURNAL_BYTES = 64 << 20  # thousands of applies; a larger file is not one tuner wrote


@dataclass(frozen=True)
class SetStep:
    knob: str
    old: Value
    new: Value


@dataclass(frozen=True)
class FileStep:
    path: Path
    previous: bytes | None  # None: the file did not exist


@dataclass
class Transaction:
    txn: str
    profile: str
    reason: str
    time: str
    steps: list[SetStep | FileStep] = field(default_factory=list)
    state: str = "open"  # open (begun, maybe crashed) | committed | aborted | rolledback

    @property
    def outstanding(self) -> bool:
        return self.state in OUTSTANDING


def ensure_state_dir(state_dir: Path) -> None:
    """Create the state directory (mode 0700) or check that an existing one is safe to trust
    (:func:`tuner.trusted.ensure_dir`: no symlink, owned by us, only we can write it and its parents)."""
    try:
        ensure_dir(state_dir)
    except OSError as exc:
        raise StateError(
            state_dir,
            f"cannot create the state directory: {exc.strerror}",
            hint="choose another with --state-dir or TUNER_STATE_DIR",
        ) from None


def _check_owned(path: Path, st: os.stat_result) -> None:
    check_owner_mode(path, st, "journal")


def _encode(value: Value) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _decode(file: Path, knob: str, raw: Any) -> Value:
    if isinstance(raw, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise StateError(file, f"a recorded value of {knob} is not a list of integers: {raw!r}")
        return tuple(raw)
    if isinstance(raw, (bool, int, str)):
        return raw
    raise StateError(file, f"a recorded value of {knob} is not a sysctl value: {raw!r}")


class Journal:
    """The journal of one target; use as a context manager (takes the target's lock)."""

    def __init__(self, state_dir: Path, target: Target) -> None:
        self.state_dir = Path(state_dir)
        self.target = target
        self.path = self.state_dir / f"{target.key}.journal"
        self.lock_path = self.state_dir / f"{target.key}.lock"
        self._lock_fd: int | None = None
        self._fd: int | None = None

    # --- lifetime -------------------------------------------------------------------------------

    def __enter__(self) -> Journal:
        ensure_state_dir(self.state_dir)
        self._lock_fd = open_nofollow(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateError(
                    self.lock_path,
                    f"another tuner apply or rollback is working on {self.target.describe()}",
                    hint="wait for it to finish, then try again",
                ) from None
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)  # closing the lock file releases the lock
                setattr(self, attr, None)

    # --- writing --------------------------------------------------------------------------------

    def _append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            created = not self.path.exists()
            if not created:
                self._drop_partial_tail()
            self._fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if created:
                self._fsync_dir()
            else:
                _check_owned(self.path, os.fstat(self._fd))
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def _drop_partial_tail(self) -> None:
        """Cut a trailing partial line (a record whose write was interrupted: its change never happened),
        so the next record starts on a line of its own."""
        data = read_limited(self.path, MAX_JOURNAL_BYTES, what="journal")
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            fd = open_nofollow(self.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, keep)
            finally:
                os.close(fd)
            log.warning("journal.partial_line_dropped", file=str(self.path), bytes=len(data) - keep)

    def _fsync_dir(self) -> None:
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def begin(self, profile: str, reason: str) -> str:
        txn = uuid.uuid4().hex[:16]
        self._append(
            {
                "op": "begin",
                "txn": txn,
                "profile": profile,
                "reason": reason,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        return txn

    def record_set(self, txn: str, knob: str, old: Value, new: Value) -> None:
        self._append({"op": "set", "txn": txn, "knob": knob, "old": _encode(old), "new": _encode(new)})

    def record_file(self, txn: str, path: Path, previous: bytes | None) -> None:
        self._append(
            {
                "op": "file",
                "txn": txn,
                "path": str(path),
                "previous": None if previous is None else base64.b64encode(previous).decode(),
            }
        )

    def close_txn(self, txn: str, state: str) -> None:
        assert state in ("commit", "abort", "rolledback")
        self._append({"op": state, "txn": txn})

    def compact(self) -> None:
        """Empty the journal once nothing in it is outstanding (so it does not grow without end)."""
        if self.path.exists() and not any(t.outstanding for t in self.transactions()):
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            atomic_write(self.path, b"", mode=0o600)
            log.info("journal.compacted", file=str(self.path))

    # --- reading --------------------------------------------------------------------------------

    def transactions(self) -> list[Transaction]:
        """Every transaction recorded, oldest first."""
        try:
            data = read_limited(self.path, MAX_JOURNAL_BYTES, trusted=True, what="journal")
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise StateError(self.path, f"cannot use the journal: it {exc}") from None
        except OSError as exc:
            raise StateError(self.path, f"cannot read the journal: {exc.strerror}") from None
        lines = data.split(b"\n")
        if lines[-1]:
            log.warning("journal.partial_line_ignored", file=str(self.path), line=len(lines))
        txns: dict[str, Transaction] = {}
        for number, raw in enumerate(lines[:-1], start=1):
            try:
                rec = parse_json(raw)
                self._apply_record(txns, rec)
            except (ValueError, KeyError, TypeError, KnobError) as exc:
                raise StateError(
                    self.path,
                    f"line {number} is damaged ({exc})",
                    hint="inspect it; tuner cannot roll back from a journal it cannot read",
                ) from None
        return list(txns.values())

    def _apply_record(self, txns: dict[str, Transaction], rec: dict[str, Any]) -> None:
        op, txn = rec["op"], rec["txn"]
        if op == "begin":
            txns[txn] = Transaction(txn, str(rec["profile"]), str(rec["reason"]), str(rec["time"]))
            return
        t = txns[txn]
        if op == "set":
            name = rec["knob"]
            if CATALOGUE.get(name) is None or not CATALOGUE[name].is_sysctl:
                raise KnobError(str(name), "is not a catalogue sysctl")
            t.steps.append(
                SetStep(name, _decode(self.path, name, rec["old"]), _decode(self.path, name, rec["new"]))
            )
        elif op == "file":
            prev = rec["previous"]
            t.steps.append(FileStep(Path(rec["path"]), None if prev is None else base64.b64decode(prev)))
        elif op == "commit":
            t.state = "committed"
        elif op == "abort":
            t.state = "aborted"
        elif op == "rolledback":
            t.state = "rolledback"
        else:
            raise ValueError(f"unknown op {op!r}")
