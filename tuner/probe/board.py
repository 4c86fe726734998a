"""A few named numbers shared by a probe's parent and the workload processes it forks.

The Board is anonymous shared memory (``mmap(-1, ...)``, MAP_SHARED): it is inherited by every child
forked after it was created, whatever namespace the child enters and whatever file descriptors it
closes, and reading it costs no system call. Parents and children use it for readiness ("the server
listens on port N"), schedules ("the measured window is [t0, t1)") and stop requests. Times on the
board are ``time.monotonic()`` values: CLOCK_MONOTONIC is one clock for every process of the machine.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable

from tuner.errors import ProbeError

__all__ = ["Board", "BoardTimeout"]


class BoardTimeout(ProbeError):
    """A value the parent waited for did not appear in time."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"gave up after {timeout:g} s waiting for {name!r}")
        self.name = name
        self.timeout = timeout


class Board:
    """Named float slots in shared memory; every slot starts at 0.0."""

    def __init__(self, *names: str) -> None:
        if len(set(names)) != len(names):
            raise ValueError("slot names must be unique")
        self._index = {name: i for i, name in enumerate(names)}
        self._mm = mmap.mmap(-1, 8 * max(1, len(names)))
        self._values = memoryview(self._mm).cast("d")

    def __getitem__(self, name: str) -> float:
        return self._values[self._index[name]]

    def __setitem__(self, name: str, value: float) -> None:
        self._values[self._index[name]] = float(value)

    def wait(
        self, name: str, *, timeout: float, alive: Callable[[], bool] | None = None, poll: float = 0.002
    ) -> float:
        """Wait until slot ``name`` is non-zero and return it.

        ``alive`` is checked while waiting: when it turns false (the process that should set the slot
        died) the wait ends early with the slot still 0.0, so the caller can collect the reason.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self[name]
            if value:
                return value
            if alive is not None and not alive():
                return self[name]
            if time.monotonic() >= deadline:
                raise BoardTimeout(name, timeout)
            time.sleep(poll)

    def snapshot(self) -> dict[str, float]:
        return {name: self._values[i] for name, i in self._index.items()}
