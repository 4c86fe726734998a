"""Observation of live workloads: sockets, kernel counters, processes -> a workload signature.

    from tuner.observe import observe
    obs = observe(duration=10.0, netns=None)
    for svc in obs.needs_tuning:      # services with symptoms
        svc.workload, svc.path         # what a search should reproduce, and over what path

Names are imported lazily: tuner.adapters.netlink imports tuner.observe.sockets, and tuner.observe's
own modules import that adapter, so this package must not import them eagerly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "tuner.observe.counters": ("Counters", "delta", "parse_counter_table", "read_counters"),
    "tuner.observe.observer": ("Observer", "collect_interval", "observe"),
    "tuner.observe.classify": (
        "SYMPTOM_KNOBS",
        "Observation",
        "Role",
        "ServiceClass",
        "ServiceShape",
        "ServiceSignature",
        "Symptom",
        "Thresholds",
        "signature",
    ),
    "tuner.observe.snapshot": ("Snapshot", "take_snapshot"),
    "tuner.observe.sockets": (
        "Owner",
        "Proto",
        "SocketMemory",
        "SocketRecord",
        "TcpInfo",
        "TcpState",
        "Timer",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner.observe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
