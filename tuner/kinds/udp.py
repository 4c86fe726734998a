"""udp: a UDP sender into a reader with a service rate."""

from __future__ import annotations

from tuner.kinds.spec import KiB, KindSpec, MiB
from tuner.probe import udp
from tuner.scoring import UdpObjective
from tuner.workload import Workload, WorkloadKind

__all__ = ["UDP"]

UDP = KindSpec(
    kind=WorkloadKind.UDP,
    workload=Workload(WorkloadKind.UDP),
    probe=udp.run_repeat,
    counter_metrics=udp.COUNTER_METRICS,
    objective=UdpObjective(),
    knobs=("SO_RCVBUF", "net.core.rmem_default"),
    optional_knobs=("net.core.rmem_max",),
    levels={
        "SO_RCVBUF": (None, 256 * KiB, 1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB),
        "net.core.rmem_default": (1 * MiB, 4 * MiB, 16 * MiB),
        "net.core.rmem_max": (4 * MiB, 16 * MiB, 64 * MiB),
    },
    repeats=3,
    duration=0.5,
)
