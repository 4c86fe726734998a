"""Lowering a process's CPU and I/O priority (what `nice` and `ionice -c idle` do), with no extra tools.

CPU: ``setpriority(2)`` niceness. I/O: the ``ioprio_set(2)`` system call through ctypes, class
"idle" (only disk time nobody else wants) or "best-effort" at its lowest level.
"""

from __future__ import annotations

import ctypes
import os
import platform

from tuner.logs import get_logger

__all__ = ["IO_CLASSES", "io_priority", "lower_priority"]

log = get_logger(__name__)

_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_WHO_PROCESS = 1
IO_CLASSES = {"none": 0, "realtime": 1, "best-effort": 2, "idle": 3}
_IO_CLASS_NAMES = {v: k for k, v in IO_CLASSES.items()}
# (ioprio_set, ioprio_get) by machine: x86_64 has its own table; arm64 and riscv use the generic one.
_SYSCALLS = {
    "x86_64": (251, 252),
    "aarch64": (30, 31),
    "riscv64": (30, 31),
    "i686": (289, 290),
    "i386": (289, 290),
    "armv7l": (314, 315),
    "ppc64le": (273, 274),
    "s390x": (282, 283),
}

_libc = ctypes.CDLL(None, use_errno=True)


def _numbers() -> tuple[int, int]:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(f"ioprio system call number unknown on {platform.machine()}")
    return numbers


def _set_io(pid: int, io_class: str) -> None:
    cls = IO_CLASSES[io_class]
    data = 7 if cls == IO_CLASSES["best-effort"] else 0  # best-effort 7 is its lowest level
    value = (cls << _IOPRIO_CLASS_SHIFT) | data
    if _libc.syscall(_numbers()[0], _IOPRIO_WHO_PROCESS, pid, value) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ioprio_set: {os.strerror(err)}")


def io_priority(pid: int = 0) -> tuple[str, int]:
    """The I/O scheduling class and level of ``pid`` (0: the caller), e.g. ``("idle", 0)``."""
    value = _libc.syscall(_numbers()[1], _IOPRIO_WHO_PROCESS, pid)
    if value < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ioprio_get: {os.strerror(err)}")
    return _IO_CLASS_NAMES.get(value >> _IOPRIO_CLASS_SHIFT, "unknown"), value & (
        (1 << _IOPRIO_CLASS_SHIFT) - 1
    )


def lower_priority(nice: int, io_class: str, pid: int = 0) -> None:
    """Make ``pid`` (0: the caller) at least ``nice`` and move it to ``io_class``. Never raises
    priority; a failure to change the I/O class is logged and tolerated (CPU niceness is what counts)."""
    if io_class not in ("idle", "best-effort"):
        raise ValueError(f"io class {io_class!r}: use 'idle' or 'best-effort'")
    current = os.getpriority(os.PRIO_PROCESS, pid)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    try:
        _set_io(pid, io_class)
    except OSError as exc:
        log.warning("priority.io_failed", io_class=io_class, error=str(exc))
