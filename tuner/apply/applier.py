"""The Applier: the only code that writes sysctls (and persisted sysctl.d files) of a target.

Rules it keeps:

* **Journal first.** Before each write, the original value is appended to the target's journal and
  fsynced (:mod:`tuner.apply.journal`). A process killed between any two instructions leaves no
  change the journal does not know, and ``rollback`` restores it.
* **All or nothing.** If a write fails (the kernel refuses it, or keeps another value), every value
  already written in this apply is restored before the error is raised.
* **Idempotent.** The live value is read again right before writing; a setting that already has its
  value is not written, so applying a profile twice changes nothing the second time.
* **Rollback newest first**, over every outstanding transaction, committed or cut short by a crash.

The tree is injected (:class:`~tuner.knobs.SysctlTree`), so the same code serves the host, a network
namespace (run inside it) and a fake ``/proc/sys`` in tests.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.apply.journal import FileStep, Journal, SetStep
from tuner.apply.plan import Change, Plan, read_live
from tuner.apply.plan import show_value as _show
from tuner.apply.target import HOST, Target
from tuner.errors import ApplyError, InputError
from tuner.knobs import CATALOGUE, SysctlTree, Value
from tuner.logs import get_logger
from tuner.profiles import MAX_PROFILE_BYTES, atomic_write
from tuner.trusted import read_limited

__all__ = ["Applier", "FileWrite", "check_file_target", "rollback"]

log = get_logger(__name__)


@dataclass(frozen=True)
class FileWrite:
    """A whole file to put in place atomically (e.g. the sysctl.d rendering of a profile)."""

    path: Path
    content: bytes


class _Refused(Exception):
    """The kernel accepted a write but kept another value."""


def check_file_target(path: Path) -> bytes | None:
    """The current content of a file the applier may replace (``None`` if absent); refuses anything but a
    small regular file in an existing directory."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: the directory {path.parent} does not exist", hint="create it first")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: exists and is not a regular file", hint="give the path of a .conf file")
    if st.st_size > MAX_PROFILE_BYTES:
        raise InputError(
            f"{path}: exists and is {st.st_size} bytes; tuner only replaces small sysctl.d files"
        )
    try:
        return read_limited(
            path, MAX_PROFILE_BYTES, what="sysctl.d file"
        )  # the file checked is the file read
    except ValueError as exc:
        raise InputError(f"{path}: {exc}", hint="give the path of a .conf file") from None


class Applier:
    """Applies plans to one target and rolls them back, keeping its journal under ``state_dir``."""

    def __init__(self, state_dir: Path, tree: SysctlTree, *, target: Target = HOST) -> None:
        self.state_dir = Path(state_dir)
        self.tree = tree
        self.target = target
        self.written_files: tuple[Path, ...] = ()  # files the last apply replaced
        self.restored_files: tuple[Path, ...] = ()  # files the last rollback restored or removed

    @property
    def journal_path(self) -> Path:
        return Journal(self.state_dir, self.target).path

    # --- apply ----------------------------------------------------------------------------------

    def apply(self, plan: Plan, reason: str, *, files: Sequence[FileWrite] = ()) -> list[Change]:
        """Make the live values match ``plan`` (and put ``files`` in place); returns what changed."""
        self.written_files = ()
        if plan.target != self.target:
            raise ValueError(
                f"a plan for {plan.target.describe()} cannot be applied to {self.target.describe()}"
            )
        previous = {f.path: check_file_target(f.path) for f in files}
        if plan.empty and all(previous[f.path] == f.content for f in files):
            log.info("apply.nothing_to_change", profile=plan.profile, target=self.target.key)
            return []
        done: list[Change] = []
        written: list[tuple[Path, bytes | None]] = []
        with Journal(self.state_dir, self.target) as journal:
            txn: str | None = None
            inflight: Change | None = None
            current = ("", "")  # (what, value) being written, for the error message
            try:
                for change in plan.changes:
                    knob = CATALOGUE[change.knob]
                    current = (knob.name, _show(change.new))
                    live = read_live(self.tree, knob.name)
                    if live is None:
                        raise _Refused("the knob is no longer available")
                    if live == change.new:
                        continue
                    txn = txn or journal.begin(plan.profile, reason)
                    journal.record_set(txn, knob.name, live, change.new)
                    inflight = Change(knob.name, live, change.new)
                    self.tree.write(knob, change.new)
                    stored = read_live(self.tree, knob.name)
                    done.append(inflight)
                    inflight = None
                    if stored != change.new:
                        raise _Refused(f"the kernel kept {_show(stored)}")
                    log.info(
                        "knob.changed",
                        knob=knob.name,
                        old=_show(live),
                        new=_show(change.new),
                        reason=reason,
                        target=self.target.key,
                    )
                for f in files:
                    if previous[f.path] == f.content:
                        continue
                    current = (str(f.path), "(sysctl.d file)")
                    txn = txn or journal.begin(plan.profile, reason)
                    journal.record_file(txn, f.path, previous[f.path])
                    written.append((f.path, previous[f.path]))
                    atomic_write(f.path, f.content)
                    log.info("file.written", path=str(f.path), reason=reason, target=self.target.key)
            except BaseException as exc:
                restored = self._undo(done, inflight, written)
                if restored and txn is not None:
                    try:
                        journal.close_txn(txn, "abort")
                    except OSError as close_exc:  # harmless: rollback finds nothing left to restore
                        log.warning("journal.abort_not_recorded", error=close_exc.strerror)
                if not isinstance(exc, (OSError, _Refused)):
                    raise  # not a write failure (e.g. interrupted): undone as far as possible, re-raised
                why = str(exc) if isinstance(exc, _Refused) else _os_reason(exc)
                log.error(
                    "apply.failed",
                    knob=current[0],
                    value=current[1],
                    error=why,
                    restored=restored,
                    target=self.target.key,
                )
                hint = None if restored else f"run `tuner rollback{self.target.cli_flag()}`"
                raise ApplyError(current[0], current[1], why, restored=restored, hint=hint) from None
            if txn is not None:
                journal.close_txn(txn, "commit")
        self.written_files = tuple(p for p, _ in written)
        return done

    def _undo(
        self, done: list[Change], inflight: Change | None, written: list[tuple[Path, bytes | None]]
    ) -> bool:
        """Restore what this apply wrote, newest first; ``True`` when everything is back."""
        ok = True
        for path, content in reversed(written):
            ok &= self._restore_file(path, content)
        if inflight is not None and read_live(self.tree, inflight.knob) not in (None, inflight.old):
            done = [*done, inflight]  # a write that failed but changed the value anyway
        for change in reversed(done):
            assert change.old is not None  # planned changes were read live: the knob exists
            try:
                self.tree.write(CATALOGUE[change.knob], change.old)
                log.info("knob.restored", knob=change.knob, value=_show(change.old), target=self.target.key)
            except OSError as exc:
                ok = False
                log.error(
                    "knob.restore_failed", knob=change.knob, value=_show(change.old), error=exc.strerror
                )
        return ok

    def _restore_file(self, path: Path, content: bytes | None) -> bool:
        try:
            if content is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, content)
            log.info("file.restored", path=str(path), removed=content is None, target=self.target.key)
            return True
        except OSError as exc:
            log.error("file.restore_failed", path=str(path), error=exc.strerror)
            return False

    # --- rollback -------------------------------------------------------------------------------

    def rollback(self, *, force: bool = False) -> list[Change]:
        """Undo every outstanding apply of this target, newest first; returns the sysctls restored
        (``old`` = the value before the rollback, ``new`` = the original). Files go to ``restored_files``.

        A knob someone else changed after tuner applied it (live value neither tuner's nor the original)
        is not overwritten: the rollback is refused, naming those knobs, before anything is restored,
        unless ``force``."""
        restored: list[Change] = []
        files: list[Path] = []
        self.restored_files = ()
        if not self.journal_path.exists():
            return []  # nothing was ever applied here: do not even create the state directory
        with Journal(self.state_dir, self.target) as journal:
            outstanding = [t for t in journal.transactions() if t.outstanding]
            drifted = self._changed_since(outstanding)
            if drifted and not force:
                raise ApplyError(
                    ", ".join(k for k, _, _ in drifted),
                    "(original)",
                    "changed by someone else since tuner applied it: "
                    + "; ".join(f"{k} is {_show(live)}, tuner set {_show(new)}" for k, new, live in drifted),
                    restored=False,
                    hint=f"nothing was rolled back; keep the other value, or put the originals back "
                    f"anyway with `tuner rollback{self.target.cli_flag()} --force`",
                )
            for txn in reversed(outstanding):
                failed: list[str] = []
                for step in reversed(txn.steps):
                    if isinstance(step, FileStep):
                        if self._restore_file(step.path, step.previous):
                            files.append(step.path)
                        else:
                            failed.append(str(step.path))
                        continue
                    change = self._restore_knob(step, failed)
                    if change is not None:
                        restored.append(change)
                if failed:
                    raise ApplyError(
                        ", ".join(failed),
                        "(original)",
                        "rollback could not restore it",
                        restored=False,
                        hint=f"fix the cause, then run `tuner rollback{self.target.cli_flag()}` again",
                    )
                journal.close_txn(txn.txn, "rolledback")
                log.info(
                    "apply.rolled_back",
                    txn=txn.txn,
                    profile=txn.profile,
                    state=txn.state,
                    target=self.target.key,
                )
            journal.compact()
        self.restored_files = tuple(files)
        return restored

    def _changed_since(self, txns: Sequence[Any]) -> list[tuple[str, Value, Value | None]]:
        """(knob, value tuner set last, live value) for each knob whose live value is none of the values
        tuner's outstanding applies wrote or found (stacked applies and a rollback cut short are tuner's own)."""
        ours: dict[str, list[Value]] = {}
        for txn in txns:
            for step in txn.steps:
                if isinstance(step, SetStep):
                    ours.setdefault(step.knob, []).extend((step.old, step.new))
        out = []
        for knob, values in ours.items():
            live = read_live(self.tree, knob)
            if live not in values:
                out.append((knob, values[-1], live))
        return out

    def _restore_knob(self, step: SetStep, failed: list[str]) -> Change | None:
        knob = CATALOGUE[step.knob]
        live = read_live(self.tree, knob.name)
        if live == step.old:
            return None  # never written (killed before the write), or already restored
        if live != step.new:
            log.warning("knob.drifted_since_apply", knob=knob.name, applied=_show(step.new), live=_show(live))
        try:
            self.tree.write(knob, step.old)
        except OSError as exc:
            failed.append(f"{knob.name} = {_show(step.old)} ({exc.strerror})")
            return None
        log.info(
            "knob.restored", knob=knob.name, old=_show(live), new=_show(step.old), target=self.target.key
        )
        return Change(knob.name, live, step.old)


def _os_reason(exc: OSError) -> str:
    return f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc.strerror or exc)


def rollback(
    state_dir: Path, tree: SysctlTree, *, target: Target = HOST, force: bool = False
) -> list[Change]:
    """Undo every outstanding apply of ``target`` recorded under ``state_dir``, newest first."""
    return Applier(state_dir, tree, target=target).rollback(force=force)
