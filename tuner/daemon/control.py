"""How `tuner daemon --release/--stage` asks the running daemon to do something: both ends.

A request is a file in the daemon's state directory, written atomically by the CLI and taken by the
daemon at its next observation, or at once when the CLI wakes it with SIGUSR1:

- ``control/release-<knob>.json`` (a :class:`ReleaseRequest`): stop treating a knob as manually
  managed;
- ``inbox/staged-<profile>.toml``: a profile, validated by the CLI, to apply under the guard (apply
  mode only; in recommend mode it waits there).

A daemon holds ``daemon.lock`` (flock) while it runs; :func:`daemon_running` tells the CLI whether
there is one to wake.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tuner.daemon.state import STATE_FILE, read_state
from tuner.inputs import parse_json
from tuner.logs import get_logger
from tuner.profiles import Profile, atomic_write, dump_profile
from tuner.trusted import ensure_dir, read_limited

__all__ = [
    "CONTROL_DIR",
    "INBOX_DIR",
    "LOCK_FILE",
    "ControlDir",
    "ReleaseRequest",
    "daemon_running",
]

log = get_logger(__name__)

LOCK_FILE = "daemon.lock"
CONTROL_DIR = "control"  # release-<knob> requests
INBOX_DIR = "inbox"  # profiles staged for a guarded apply
_RELEASE_PREFIX, _RELEASE_SUFFIX = "release-", ".json"
_STAGED_PREFIX, _STAGED_SUFFIX = "staged-", ".toml"
_MAX_REQUEST_BYTES = 4096


@dataclass(frozen=True)
class ReleaseRequest:
    """Hand a knob marked manual back to the daemon."""

    knob: str
    at: float  # wall-clock seconds when it was asked

    def to_json(self) -> bytes:
        return json.dumps({"knob": self.knob, "at": self.at}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ReleaseRequest:
        """The request in ``raw``; ValueError if it is not one."""
        data = parse_json(raw)
        if not isinstance(data, dict):
            raise ValueError("a request is a JSON object")  # noqa: TRY004 (bad input, not a type bug)
        knob, at = data.get("knob"), data.get("at", 0.0)
        if not isinstance(knob, str) or not knob:
            raise ValueError("the request names no knob")
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise ValueError(f"bad time {at!r}")  # noqa: TRY004 (bad input, not a type bug)
        return cls(knob, float(at))


def daemon_running(state_dir: Path) -> bool:
    """Whether a daemon holds the lock of ``state_dir`` right now."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


class ControlDir:
    """The request files of one state directory: written by the CLI, taken by the daemon."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.control = state_dir / CONTROL_DIR
        self.inbox = state_dir / INBOX_DIR

    # --- the CLI's end ----------------------------------------------------------------------------

    def request_release(self, knob: str) -> Path:
        ensure_dir(self.state_dir)
        path = ensure_dir(self.control) / f"{_RELEASE_PREFIX}{knob}{_RELEASE_SUFFIX}"
        atomic_write(path, ReleaseRequest(knob, time.time()).to_json(), mode=0o600)
        return path

    def stage(self, profile: Profile) -> Path:
        """Put a validated profile in the inbox for a guarded apply."""
        ensure_dir(self.state_dir)
        dest = ensure_dir(self.inbox) / f"{_STAGED_PREFIX}{profile.name}{_STAGED_SUFFIX}"
        atomic_write(dest, dump_profile(profile).encode(), mode=0o600)
        return dest

    def wake(self) -> bool:
        """Ask a running daemon to pick up requests now (SIGUSR1); False if none runs."""
        if not daemon_running(self.state_dir):
            return False
        try:
            pid = read_state(self.state_dir / STATE_FILE).pid
            if pid > 0:
                os.kill(pid, signal.SIGUSR1)
                return True
        except (ValueError, OSError):
            pass
        return False

    # --- the daemon's end -------------------------------------------------------------------------

    def take_releases(self) -> list[ReleaseRequest]:
        """Every release request waiting, each removed once read (an unreadable one is logged)."""
        try:
            names = sorted(os.listdir(self.control))
        except FileNotFoundError:
            names = []
        requests = []
        for name in names:
            if not name.startswith(_RELEASE_PREFIX) or not name.endswith(_RELEASE_SUFFIX):
                continue
            path = self.control / name
            try:
                requests.append(
                    ReleaseRequest.from_json(read_limited(path, _MAX_REQUEST_BYTES, what="request"))
                )
            except (OSError, ValueError) as exc:
                log.warning("request.unreadable", file=str(path), error=str(exc))
            path.unlink(missing_ok=True)
        return requests

    def staged(self) -> list[str]:
        """The names of the profiles waiting in the inbox."""
        try:
            return sorted(n for n in os.listdir(self.inbox) if n.endswith(_STAGED_SUFFIX))
        except FileNotFoundError:
            return []

    def accept(self, name: str, into: Path) -> Path:
        """Move a staged profile out of the inbox into ``into`` (a symlink moves as a link; loading it
        later refuses it)."""
        dest = into / name
        os.replace(self.inbox / name, dest)
        return dest
