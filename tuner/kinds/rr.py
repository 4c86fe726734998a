"""rr: TCP request/response (an echo service); the default writes each request in two (the Nagle trap)."""

from __future__ import annotations

from tuner.kinds.spec import KiB, KindSpec, MiB, window
from tuner.probe import rr
from tuner.scoring import Goal, MetricObjective
from tuner.workload import Workload, WorkloadKind, WritePattern

__all__ = ["RR", "RR_WINDOW_RTTS"]

# a request/response window holds at least 100 round trips so its p99 rests on enough requests
RR_WINDOW_RTTS = 100


def _window(duration: float, rtt: float) -> float:
    return window(RR_WINDOW_RTTS * rtt, floor=duration) if rtt else duration


RR = KindSpec(
    kind=WorkloadKind.RR,
    workload=Workload(WorkloadKind.RR, write_pattern=WritePattern.SPLIT),
    probe=rr.run_repeat,
    objective=MetricObjective("latency_p99_ms", Goal.MIN),
    knobs=("TCP_NODELAY", "TCP_QUICKACK", "SO_SNDBUF", "SO_RCVBUF"),
    optional_knobs=("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "TCP_CONGESTION"),
    levels={
        "SO_SNDBUF": (None, 16 * KiB, 256 * KiB, 4 * MiB),
        "SO_RCVBUF": (None, 16 * KiB, 256 * KiB, 4 * MiB),
    },
    repeats=3,
    duration=0.5,
    window=_window,
)
