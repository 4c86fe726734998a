"""Observation of live workloads: sockets, kernel counters, processes -> a workload signature.

    from tuner.observe import observe
    obs = observe(duration=10.0, netns=None)
    for svc in obs.needs_tuning:      # services with symptoms
        svc.workload, svc.path         # what a search should reproduce, and over what path

The socket records (``SocketRecord``, ``TcpInfo``, ...) are tuner.kernel's, re-exported here.
"""

from __future__ import annotations

from tuner.kernel import Owner, Proto, SocketMemory, SocketRecord, TcpInfo, TcpState, Timer
from tuner.observe.classify import (
    SYMPTOM_KNOBS,
    Observation,
    Role,
    ServiceClass,
    ServiceShape,
    ServiceSignature,
    Symptom,
    Thresholds,
    signature,
)
from tuner.observe.counters import Counters, delta, parse_counter_table, read_counters
from tuner.observe.observer import Observer, collect_interval, observe
from tuner.observe.snapshot import Snapshot, take_snapshot

__all__ = [
    "SYMPTOM_KNOBS",
    "Counters",
    "Observation",
    "Observer",
    "Owner",
    "Proto",
    "Role",
    "ServiceClass",
    "ServiceShape",
    "ServiceSignature",
    "Snapshot",
    "SocketMemory",
    "SocketRecord",
    "Symptom",
    "TcpInfo",
    "TcpState",
    "Thresholds",
    "Timer",
    "collect_interval",
    "delta",
    "observe",
    "parse_counter_table",
    "read_counters",
    "signature",
    "take_snapshot",
]
