"""memory: many mostly idle connections; the kernel memory each one holds."""

from __future__ import annotations

from tuner.kinds.spec import KiB, KindSpec, MiB
from tuner.probe import memory
from tuner.scoring import MemoryObjective
from tuner.workload import Workload, WorkloadKind

__all__ = ["MEMORY"]

MEMORY = KindSpec(
    kind=WorkloadKind.MEMORY,
    workload=Workload(WorkloadKind.MEMORY, idle_connections=500),
    probe=memory.run_repeat,
    objective=MemoryObjective(),
    knobs=("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"),
    optional_knobs=("SO_RCVBUF", "SO_SNDBUF"),
    levels={
        "net.ipv4.tcp_rmem": (64 * KiB, 1 * MiB, 8 * MiB),
        "net.ipv4.tcp_wmem": (64 * KiB, 1 * MiB, 8 * MiB),
        "SO_RCVBUF": (None, 16 * KiB, 256 * KiB),
        "SO_SNDBUF": (None, 16 * KiB, 256 * KiB),
    },
    repeats=3,
    duration=0.5,
)
