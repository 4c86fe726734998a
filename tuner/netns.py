"""Running code inside a named network namespace, in a child process.

The parent never switches namespace itself: :func:`run_in_netns` forks, the child enters the
namespace (``setns``), runs the function and sends back its result or its exception (pickled).
:class:`NetnsChild` is the same mechanism kept as a handle, for children that run in the background.
Named namespaces are the files ``ip netns`` keeps under ``/run/netns``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tuner.errors import NetnsNotFoundError, TunerError

__all__ = [
    "NETNS_DIR",
    "ChildFailed",
    "ChildTimeout",
    "NetnsChild",
    "enter_netns",
    "netns_exists",
    "run_in_netns",
]

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


def _valid_name(name: str) -> bool:
    """A name as `ip netns` allows it: one path component, so it can only mean a file in NETNS_DIR."""
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")


def netns_exists(name: str) -> bool:
    return _valid_name(name) and (NETNS_DIR / name).is_file()


def enter_netns(name: str) -> None:
    """Switch the *calling process* into ``name``. Only for children that exist to do that."""
    if not _valid_name(name):
        raise NetnsNotFoundError(name)
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


_PR_SET_PDEATHSIG = 1
_CHILD_DEFAULT_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_HEADER = struct.Struct("<Q")  # length of the pickled report that follows
_POLL = 0.05  # seconds between liveness checks where pidfds are missing


class ChildTimeout(TunerError, TimeoutError):
    """A child did not report its result within the time asked for (it is still running)."""

    def __init__(self, pid: int, timeout: float) -> None:
        super().__init__(f"child {pid} gave no result within {timeout:g} s")
        self.pid = pid
        self.timeout = timeout


def _child_main(
    netns: str | None,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    w: int,
    parent: int,
    die_with_parent: bool,
) -> None:
    """Body of a forked child: enter ``netns``, run ``fn``, pickle the outcome into ``w``, exit."""
    status = 0
    try:
        # the parent blocked these around fork: reset the handlers, then let pending ones in
        for signum in _CHILD_DEFAULT_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if die_with_parent:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
        if netns is not None:
            enter_netns(netns)
        payload: tuple[object, ...] = ("ok", fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        payload = ("err", exc, traceback.format_exc())
    try:
        data = pickle.dumps(payload)
    except Exception as exc:  # noqa: BLE001 - unpicklable result or exception
        data = pickle.dumps(("err", ChildFailed(f"child result could not be sent: {exc}"), ""))
    try:
        with os.fdopen(w, "wb") as f:
            f.write(_HEADER.pack(len(data)) + data)  # framed: grandchildren holding ``w`` cannot delay us
    except OSError:
        status = 1
    os._exit(status)


class NetnsChild:
    """A forked child running one function inside a namespace; its result comes back through a pipe.

    :func:`run_in_netns` is ``start(...).result()``; sandbox jobs keep the handle and collect later.
    """

    def __init__(
        self,
        netns: str | None,
        fn: Callable[..., Any],
        args: tuple = (),
        kwargs: dict | None = None,
        *,
        die_with_parent: bool = False,
    ) -> None:
        if netns is not None and not netns_exists(netns):
            raise NetnsNotFoundError(netns)
        self.netns = netns
        parent = os.getpid()
        r, w = os.pipe()
        # a signal sent to the child before it resets the parent's handlers would be lost (Python
        # drops a pending signal whose handler became SIG_DFL): block them across the fork
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _CHILD_DEFAULT_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # child
                os.close(r)
                _child_main(netns, fn, args, kwargs or {}, w, parent, die_with_parent)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(w)
        self.pid = pid
        self._fd: int | None = r
        self._buf = bytearray()
        self._status: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)  # readable once the child has exited
        except (AttributeError, OSError):
            self._pidfd = None

    def _reap(self, block: bool) -> bool:
        if self._status is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped by someone else
            self._status = -1
            return True
        if pid == 0:
            return False
        self._status = status
        return True

    def alive(self) -> bool:
        return not self._reap(block=False)

    def _complete(self) -> bool:
        return (
            len(self._buf) >= _HEADER.size
            and len(self._buf) >= _HEADER.size + _HEADER.unpack_from(self._buf)[0]
        )

    def _read_available(self) -> None:
        """Everything already in the pipe (the child is gone, so nothing more is coming from it)."""
        assert self._fd is not None
        os.set_blocking(self._fd, False)
        while not self._complete():
            try:
                chunk = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._buf += chunk

    def _drain(self, timeout: float | None) -> bool:
        """Read until the child's report is complete, the pipe ends or the child is gone; False if
        ``timeout`` ran out first. A grandchild that inherited the pipe cannot hold this up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._fd is not None and not self._complete():
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            watched = [self._fd]
            if self._pidfd is not None:
                watched.append(self._pidfd)
            else:
                wait = _POLL if wait is None else min(wait, _POLL)
            ready = select.select(watched, [], [], wait)[0]
            if self._fd in ready:
                chunk = os.read(self._fd, 1 << 16)
                if not chunk:
                    break
                self._buf += chunk
            elif self._pidfd in ready or (self._pidfd is None and not self.alive()):
                self._read_available()
                break
            elif deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the child's outcome: its return value, or its exception raised here.

        Raises :class:`ChildTimeout` if ``timeout`` runs out (the child keeps running) and
        :class:`ChildFailed` if the child died without reporting.
        """
        if not self._drain(timeout):
            raise ChildTimeout(self.pid, timeout or 0.0)
        self._reap(block=True)
        self.close()  # the child is reaped and its report read: its pipe and pidfd are done (a long-lived
        #               process would otherwise run out of descriptors, and select() fails past 1024)
        if not self._complete():
            raise ChildFailed(
                f"child for namespace {self.netns!r} exited without a result "
                f"({_describe_status(self._status)})",
                exit_status=self._status,
            )
        size = _HEADER.unpack_from(self._buf)[0]
        payload = pickle.loads(self._buf[_HEADER.size : _HEADER.size + size])  # noqa: S301 (our own child)
        if payload[0] == "ok":
            return payload[1]
        exc = payload[1]
        if isinstance(exc, BaseException):
            raise exc
        raise ChildFailed(str(exc), remote_traceback=payload[2])

    def kill(self, sig: int = signal.SIGKILL, *, grace: float = 0.0) -> None:
        """Signal the child (``sig``), wait up to ``grace`` seconds, then SIGKILL it; always reaped.

        A result the child had already sent stays available to :meth:`result`.
        """
        if not self._reap(block=False):
            self._signal(sig)
            if sig != signal.SIGKILL:
                deadline = time.monotonic() + grace
                while not self._reap(block=False):
                    if time.monotonic() >= deadline:
                        self._signal(signal.SIGKILL)
                        break
                    time.sleep(0.005)
            self._reap(block=True)
        with contextlib.suppress(OSError):
            self._drain(0.0)
        self.close()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def close(self) -> None:
        for name in ("_fd", "_pidfd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


def _describe_status(status: int | None) -> str:
    if status is None or status < 0:
        return "status unknown"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def run_in_netns(netns: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a forked child inside ``netns`` and return its result.

    ``netns=None`` runs it in a child in the current namespace. Exceptions raised by ``fn`` are
    re-raised in the parent with their type and fields intact. The child dies with the parent (a
    SIGKILLed ``tuner apply --netns`` must not leave its child applying on its own).
    """
    child = NetnsChild(netns, fn, args, kwargs, die_with_parent=True)
    try:
        return child.result()
    finally:
        child.kill()  # reaped already when it reported; killed and reaped if we were interrupted (Ctrl-C)
