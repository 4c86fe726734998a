"""CPU accounting of the load generator: was the workload program itself the limit?"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

__all__ = ["SATURATED", "CpuMeter", "cpu_seconds"]

# A process whose CPU time reaches this share of the wall time of a window was busy all along: for a
# Python loop (one GIL) it is the load generator, not the network settings, that set the pace.
SATURATED = 0.90


def cpu_seconds() -> float:
    """CPU time (user + system, all threads) of the calling process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class CpuMeter:
    """CPU share of the calling process over a window: ``start()`` then ``stop()`` -> fraction of a core."""

    _cpu0: float = 0.0
    _wall0: float = 0.0
    share: float = 0.0

    def start(self) -> None:
        self._cpu0, self._wall0 = cpu_seconds(), time.monotonic()

    def stop(self) -> float:
        wall = time.monotonic() - self._wall0
        self.share = (cpu_seconds() - self._cpu0) / wall if wall > 0 else 0.0
        return self.share
