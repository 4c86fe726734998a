"""Cleanup of live sandboxes under every exit the process can survive long enough to notice.

- normal exit and exceptions: the context manager;
- SIGINT: Python raises KeyboardInterrupt, which unwinds through the context manager;
- SIGTERM and SIGHUP: while a sandbox is live and the application has no handler of its own, a handler
  raises ``SystemExit(128 + signum)`` so the same unwinding happens;
- interpreter exit with a sandbox never closed: an ``atexit`` hook closes it;
- SIGKILL: nothing can run; the next sandbox (or ``tuner sandbox gc``) reaps what is left
  (:mod:`tuner.sandbox.registry`), and the helpers die with their owner (PR_SET_PDEATHSIG).

While a sandbox is being torn down these signals are blocked, so a second Ctrl-C cannot leave it half
removed; they are delivered right after.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from tuner.logs import get_logger

__all__ = ["live_sandboxes", "signals_deferred", "track", "untrack"]

log = get_logger(__name__)

_TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_DEFERRED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class _Closable(Protocol):
    name: str

    def close(self) -> None: ...


_lock = threading.RLock()
_live: dict[int, _Closable] = {}
_installed: dict[int, Any] = {}  # signum -> the handler we replaced
_owner_pid = os.getpid()
_atexit_registered = False


def _on_terminating_signal(signum: int, frame: object) -> None:
    if os.getpid() != _owner_pid:  # a forked child that inherited the handler: behave as default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    log.info("sandbox.signal", signal=signal.Signals(signum).name, live=len(_live))
    raise SystemExit(128 + signum)


def _install() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _TERMINATING:
        if signum in _installed:
            continue
        current = signal.getsignal(signum)
        if current is signal.SIG_DFL:
            signal.signal(signum, _on_terminating_signal)
            _installed[signum] = current


def _uninstall() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_installed.items()):
        if signal.getsignal(signum) is _on_terminating_signal:
            signal.signal(signum, previous)
        del _installed[signum]


def _close_all_at_exit() -> None:
    if os.getpid() != _owner_pid:
        return
    for sb in list(_live.values()):
        log.warning("sandbox.closed_at_exit", sandbox=sb.name)
        sb.close()


def track(sb: _Closable) -> None:
    global _owner_pid, _atexit_registered  # noqa: PLW0603 (per-process state, reset after fork)
    with _lock:
        if os.getpid() != _owner_pid:  # we are a fork: start over
            _owner_pid = os.getpid()
            _live.clear()
            _installed.clear()
        _install()  # idempotent; a no-op outside the main thread
        _live[id(sb)] = sb
        if not _atexit_registered:
            atexit.register(_close_all_at_exit)
            _atexit_registered = True


def untrack(sb: _Closable) -> None:
    with _lock:
        _live.pop(id(sb), None)
        if not _live:
            _uninstall()


def live_sandboxes() -> list[_Closable]:
    with _lock:
        return list(_live.values())


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Block SIGINT, SIGTERM and SIGHUP in this thread for the duration (they arrive afterwards)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
