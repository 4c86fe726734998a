"""Workload kinds: one record per kind (:class:`KindSpec`), one module per kind, one registry.

    from tuner.kinds import KINDS, spec
    spec(WorkloadKind.RR).workload      # the default rr workload
    spec(kind).knobs, spec(kind).objective, spec(kind).probe_settings(path)

Adding a kind: a module here defining its record, and one line below (plus its WorkloadKind member and
its probe module in :mod:`tuner.probe`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tuner.kinds.bulk import BULK
from tuner.kinds.burst import BURST
from tuner.kinds.keepalive import KEEPALIVE
from tuner.kinds.memory import MEMORY
from tuner.kinds.rr import RR
from tuner.kinds.spec import KindSpec
from tuner.kinds.udp import UDP
from tuner.workload import Workload, WorkloadKind

__all__ = ["DEFAULT_WORKLOADS", "KINDS", "KindSpec", "spec"]

KINDS: Mapping[WorkloadKind, KindSpec] = MappingProxyType(
    {
        s.kind: s
        for s in (
            RR,
            BURST,
            BULK,
            UDP,
            KEEPALIVE,
            MEMORY,
        )
    }
)

# each kind's default workload (a view of the records, for the many callers that start from one)
DEFAULT_WORKLOADS: Mapping[WorkloadKind, Workload] = MappingProxyType(
    {k: s.workload for k, s in KINDS.items()}
)


def spec(kind: WorkloadKind) -> KindSpec:
    """The record of ``kind``."""
    return KINDS[kind]
