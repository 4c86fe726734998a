"""PathHealth: whether the emulated path itself behaved during a measurement.

A probe keeps a repeat only if its path was healthy: no packet lost at the TUN ring (the delay line fell
behind the kernel), packets sent on time (p99 lateness under :data:`MAX_LATE_P99_MS`, or the kind's own
coarser limit: :meth:`PathHealth.judged_with`), helpers alive,
and the delay line not saturated (a forwarder busy :data:`MAX_LINE_CPU_SHARE` of a core or more): a
saturated line, not the emulated path, sets the pace, and its backlog waits unseen in the TUN ring.
Emulated loss and queue drops are the path doing its job and do not make a run invalid. On a virtual
machine the usual cause of a late line is the hypervisor taking the CPU away (steal): the health records
that share, and a refusal names it. A limit looser than 1 ms would not do: a window-limited goodput over
a 200 ms path was 1.5% low in repeats 1-6 ms late and 4-5% beyond (bench/results/lateness_bias.md).

Every PathHealth also says what was asked for (``rate_bps``) and what the path carried
(``delivered_bps``, the busier direction's IP bytes per second), so a reader can tell a flow that
filled the path from one that did not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "LATE_MS",
    "MAX_LATE_P99_MS",
    "MAX_LINE_CPU_SHARE",
    "STEAL_SHARE",
    "PathHealth",
    "judge",
    "merge_health",
]

MAX_LATE_P99_MS = 1.0  # p99 lateness above this: the delay line could not keep its schedule
LATE_MS = 1.0  # a packet sent more than this after its departure time counts as late
MAX_LINE_CPU_SHARE = 0.9  # a forwarder this busy (share of one core) is the bottleneck itself
STEAL_SHARE = 0.02  # the hypervisor took at least this share of the machine's CPU: named in a refusal
_MIN_CPU_WINDOW = 0.25  # seconds: a shorter window says nothing reliable about saturation


@dataclass(frozen=True)
class PathHealth:
    """Counters of the emulated path since the sandbox was created or :meth:`Sandbox.reset_health`; or,
    from :func:`merge_health`, of several such windows (counts summed, lateness the worst window's)."""

    backend: str
    packets: int  # packets that entered the path (both directions)
    dropped_loss: int  # dropped by the emulated random loss
    dropped_queue: int  # dropped by the full bottleneck queue
    tun_drops: int  # dropped at the TUN devices (ring overflow, failed writes)
    late_packets: int  # sent more than LATE_MS after their departure time
    late_p99_ms: float
    late_max_ms: float
    cpu_seconds: float  # CPU time of the delay line's processes
    valid: bool
    reason: str | None
    dropped_partition: int = 0  # dropped while the path was partitioned
    bytes_to_server: int = 0  # IP bytes delivered client -> server
    bytes_to_client: int = 0  # IP bytes delivered server -> client
    elapsed: float = 0.0  # seconds covered by these counters
    rate_bps: float | None = None  # the rate cap asked for, each direction (None: uncapped)
    offload: bool = False  # the delay line moved TCP super-packets (TUN offloads)
    frames: int = 0  # frames the delay line read (a super-packet is one frame, many packets)
    line_cpu_share: float = 0.0  # the busiest forwarder's CPU time / elapsed (1.0 = one core)
    helpers_alive: bool = True  # the delay line's processes were alive when the counters were read
    # what the delay line added to a round trip beyond its delay when the path was built (ms), and took
    # off its delay since (tuner.sandbox.links.TunLink): the RTT's floor is then about the one asked for
    overhead_ms: float = 0.0
    # share of this machine's CPU time (all CPUs) the hypervisor took during the window (steal)
    steal_share: float = 0.0

    def judged_with(self, max_late_p99_ms: float) -> PathHealth:
        """This health judged with another lateness limit: a measurement whose metric moves in seconds
        (keepalive timers) is not spoiled by a packet a few milliseconds late (see KindSpec)."""
        if not self.helpers_alive or max_late_p99_ms == MAX_LATE_P99_MS:
            return self
        valid, reason = judge(
            self.tun_drops,
            self.late_p99_ms,
            line_cpu_share=self.line_cpu_share,
            elapsed=self.elapsed,
            max_late_p99_ms=max_late_p99_ms,
            steal_share=self.steal_share,
        )
        return replace(self, valid=valid, reason=reason)

    @property
    def delivered_bps(self) -> float:
        """IP bits per second the path delivered in its busier direction."""
        if self.elapsed <= 0:
            return 0.0
        return max(self.bytes_to_server, self.bytes_to_client) * 8 / self.elapsed

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["delivered_bps"] = self.delivered_bps
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PathHealth:
        """The health :meth:`to_dict` wrote, or a measurement's numeric part of it (its text fields then
        read "unknown"/None, and its derived figures are left out)."""
        names = {f.name for f in fields(cls)}
        known: dict[str, Any] = {"backend": "unknown", "reason": None}
        known.update({k: v for k, v in d.items() if k in names})
        return cls(**known)


def judge(
    tun_drops: int,
    late_p99_ms: float,
    helpers_alive: bool = True,
    *,
    line_cpu_share: float = 0.0,
    elapsed: float = 0.0,
    max_late_p99_ms: float = MAX_LATE_P99_MS,
    steal_share: float = 0.0,
) -> tuple[bool, str | None]:
    """(valid, reason): the rules that make a measurement over this path trustworthy or not."""
    if not helpers_alive:
        return False, "sandbox: the delay line's process died"
    valid, reason = _judge_load(tun_drops, late_p99_ms, line_cpu_share, elapsed, max_late_p99_ms)
    if reason is not None and steal_share >= STEAL_SHARE:
        reason += (
            f"; the hypervisor took {steal_share * 100:.0f}% of this machine's CPU meanwhile (steal): "
            "this virtual machine cannot keep the path's schedule while its host is busy"
        )
    return valid, reason


def _judge_load(
    tun_drops: int, late_p99_ms: float, line_cpu_share: float, elapsed: float, max_late_p99_ms: float
) -> tuple[bool, str | None]:
    if line_cpu_share >= MAX_LINE_CPU_SHARE and elapsed >= _MIN_CPU_WINDOW:
        return False, (
            f"sandbox: the delay line was saturated ({line_cpu_share * 100:.0f}% of a core): it, "
            "not the emulated path, set the pace (the rate is above what this machine can "
            "emulate now; see `tuner doctor`)"
        )
    if tun_drops:
        return False, (
            f"sandbox: {tun_drops} packets dropped at the TUN devices "
            "(the delay line fell behind; the machine is overloaded or the rate too high)"
        )
    if late_p99_ms > max_late_p99_ms:
        return False, (
            f"sandbox: p99 packet lateness {late_p99_ms:.2f} ms > {max_late_p99_ms:g} ms "
            "(the delay line could not keep its schedule; the machine is overloaded)"
        )
    return True, None


def merge_health(parts: Sequence[PathHealth]) -> PathHealth:
    """One PathHealth for consecutive windows (a measurement's repeats): counts and times add up; the
    lateness and the line's CPU share are the worst window's (a p99 cannot be pooled from p99s, and
    the worst is what a reader must know); valid only if every window was."""
    if not parts:
        raise ValueError("merge_health needs at least one PathHealth")
    first = parts[0]
    if len(parts) == 1:
        return first
    invalid = [p for p in parts if not p.valid]

    def total(name: str) -> int | float:
        return sum(getattr(p, name) for p in parts)

    return PathHealth(
        backend=first.backend,
        packets=int(total("packets")),
        dropped_loss=int(total("dropped_loss")),
        dropped_queue=int(total("dropped_queue")),
        tun_drops=int(total("tun_drops")),
        late_packets=int(total("late_packets")),
        late_p99_ms=max(p.late_p99_ms for p in parts),
        late_max_ms=max(p.late_max_ms for p in parts),
        cpu_seconds=float(total("cpu_seconds")),
        valid=not invalid,
        reason=invalid[0].reason if invalid else None,
        dropped_partition=int(total("dropped_partition")),
        bytes_to_server=int(total("bytes_to_server")),
        bytes_to_client=int(total("bytes_to_client")),
        elapsed=float(total("elapsed")),
        rate_bps=first.rate_bps,
        offload=any(p.offload for p in parts),
        frames=int(total("frames")),
        line_cpu_share=max(p.line_cpu_share for p in parts),
        helpers_alive=all(p.helpers_alive for p in parts),
        overhead_ms=max(p.overhead_ms for p in parts),
        steal_share=max(p.steal_share for p in parts),
    )
