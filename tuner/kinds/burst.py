"""burst: many short connections at once against a listener."""

from __future__ import annotations

from tuner.kinds.spec import KindSpec
from tuner.probe import burst
from tuner.scoring import Goal, MetricObjective
from tuner.workload import Workload, WorkloadKind

__all__ = ["BURST"]

BURST = KindSpec(
    kind=WorkloadKind.BURST,
    workload=Workload(WorkloadKind.BURST),
    probe=burst.run_repeat,
    counter_metrics=burst.COUNTER_METRICS,
    objective=MetricObjective("connect_p99_ms", Goal.MIN),
    # net.core.somaxconn only caps the backlog: a backlog level above it raises it (see Space.candidate),
    # and on its own (levels above the application's backlog) it moves nothing, so it is no dimension
    knobs=("backlog", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_syncookies"),
    optional_knobs=("net.core.somaxconn",),
    inert_knobs={
        "net.ipv4.tcp_fastopen": "the burst client never sends data with its SYN (no Fast Open cookie is used)",
        "net.ipv4.tcp_tw_reuse": "the burst client resets every connection: no TIME_WAIT is left to reuse",
        "net.ipv4.ip_local_port_range": "the burst opens far fewer connections than there are ports "
        "(and leaves no TIME_WAIT): no port exhaustion to relieve",
    },
    levels={
        "backlog": (None, 512, 4096, 32768),
        "net.core.somaxconn": (1024, 4096, 16384, 65535),
        "net.ipv4.tcp_max_syn_backlog": (256, 2048, 16384),
    },
    repeats=3,
    duration=0.5,
)
