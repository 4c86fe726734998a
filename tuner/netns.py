"""Running code inside a named network namespace, in a child process.

The parent never switches namespace itself: :func:`run_in_netns` forks, the child enters the
namespace (``setns``), runs the function and sends back its result or its exception (pickled).
Named namespaces are the files ``ip netns`` keeps under ``/run/netns``.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import traceback
from pathlib import Path
from typing import Any, Callable, TypeVar

from tuner.errors import NetnsNotFoundError, TunerError

__all__ = ["NETNS_DIR", "netns_exists", "enter_netns", "run_in_netns", "ChildFailed"]

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class ChildFailed(TunerError):
    """A child process died without reporting a result (killed by a signal, or unpicklable result)."""

    def __init__(self, message: str, *, exit_status: int | None = None, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.remote_traceback = remote_traceback


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).is_file()


def enter_netns(name: str) -> None:
    """Switch the *calling process* into ``name``. Only for children that exist to do that."""
    path = NETNS_DIR / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsNotFoundError(name) from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def run_in_netns(netns: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a forked child inside ``netns`` and return its result.

    ``netns=None`` runs it in a child in the current namespace. Exceptions raised by ``fn`` are
    re-raised in the parent with their type and fields intact.
    """
    if netns is not None and not netns_exists(netns):
        raise NetnsNotFoundError(netns)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        status = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if netns is not None:
                enter_netns(netns)
            payload = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            payload = ("err", exc, traceback.format_exc())
        try:
            data = pickle.dumps(payload)
        except Exception as exc:  # noqa: BLE001 - unpicklable result or exception
            data = pickle.dumps(("err", ChildFailed(f"child result could not be sent: {exc}"), ""))
        try:
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except OSError:
            status = 1
        os._exit(status)
    os.close(w)
    try:
        data = _read_all(r)
    finally:
        os.close(r)
        _, wstatus = os.waitpid(pid, 0)
    if not data:
        raise ChildFailed(f"child for namespace {netns!r} exited without a result (status {wstatus})",
                          exit_status=wstatus)
    payload = pickle.loads(data)
    if payload[0] == "ok":
        return payload[1]
    exc = payload[1]
    if isinstance(exc, BaseException):
        raise exc
    raise ChildFailed(str(exc), remote_traceback=payload[2])
