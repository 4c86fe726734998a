"""PathHealth: whether the emulated path itself behaved during a measurement.

A probe keeps a run only if its path was healthy: no packet lost at the TUN ring (the delay line fell
behind the kernel), packets sent on time (p99 lateness under :data:`MAX_LATE_P99_MS`), helpers alive.
Emulated loss and queue drops are the path doing its job and do not make a run invalid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PathHealth", "MAX_LATE_P99_MS", "LATE_MS", "judge"]

MAX_LATE_P99_MS = 1.0   # p99 lateness above this: the delay line could not keep its schedule
LATE_MS = 1.0           # a packet sent more than this after its departure time counts as late


@dataclass(frozen=True)
class PathHealth:
    """Counters of the emulated path since the sandbox was created or :meth:`Sandbox.reset_health`."""

    backend: str
    packets: int                 # packets that entered the path (both directions)
    dropped_loss: int            # dropped by the emulated random loss
    dropped_queue: int           # dropped by the full bottleneck queue
    tun_drops: int               # dropped at the TUN devices (ring overflow, failed writes)
    late_packets: int            # sent more than LATE_MS after their departure time
    late_p99_ms: float
    late_max_ms: float
    cpu_seconds: float           # CPU time of the delay line's processes
    valid: bool
    reason: str | None
    dropped_partition: int = 0   # dropped while the path was partitioned
    bytes_to_server: int = 0     # IP bytes delivered client -> server
    bytes_to_client: int = 0     # IP bytes delivered server -> client
    elapsed: float = 0.0         # seconds covered by these counters

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(tun_drops: int, late_p99_ms: float, helpers_alive: bool = True) -> tuple[bool, str | None]:
    """(valid, reason): the rules that make a measurement over this path trustworthy or not."""
    if not helpers_alive:
        return False, "sandbox: the delay line's process died"
    if tun_drops:
        return False, (f"sandbox: {tun_drops} packets dropped at the TUN devices "
                       "(the delay line fell behind; the machine is overloaded or the rate too high)")
    if late_p99_ms > MAX_LATE_P99_MS:
        return False, (f"sandbox: p99 packet lateness {late_p99_ms:.2f} ms > {MAX_LATE_P99_MS:g} ms "
                       "(the delay line could not keep its schedule; the machine is overloaded)")
    return True, None
