"""Job: a background child running one function inside a sandbox namespace."""

from __future__ import annotations

import signal
from typing import Any

from tuner.netns import NetnsChild

__all__ = ["TERMINATE_GRACE", "Job"]

TERMINATE_GRACE = 1.0  # seconds a job gets after SIGTERM before SIGKILL


class Job:
    """Handle of a child started by :meth:`Sandbox.spawn`.

    ``result()`` returns the function's value or raises its exception (or
    :class:`tuner.netns.ChildFailed` if the child died, :class:`tuner.netns.ChildTimeout` if
    ``timeout`` ran out). The sandbox kills and reaps every job when it closes.
    """

    def __init__(self, child: NetnsChild, side: Any) -> None:
        self._child = child
        self.side = side

    @property
    def pid(self) -> int:
        return self._child.pid

    def alive(self) -> bool:
        return self._child.alive()

    def result(self, timeout: float | None = None) -> Any:
        return self._child.result(timeout)

    def terminate(self) -> None:
        """SIGTERM, then SIGKILL after :data:`TERMINATE_GRACE` seconds; the child is reaped."""
        self._child.kill(signal.SIGTERM, grace=TERMINATE_GRACE)

    def kill(self) -> None:
        self._child.kill(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"Job(pid={self.pid}, side={getattr(self.side, 'value', self.side)})"
