"""Sandboxes: two network namespaces joined by an emulated path, created and always destroyed by tuner.

from tuner.sandbox import Sandbox, Side, PathHealth, Job, reap_stale
"""

from tuner.sandbox.health import PathHealth
from tuner.sandbox.job import Job
from tuner.sandbox.layout import Side
from tuner.sandbox.links import DEFAULT_RATE_BPS, LinkPlan, plan_link
from tuner.sandbox.registry import reap_stale
from tuner.sandbox.sandbox import Sandbox, netem_available

__all__ = [
    "DEFAULT_RATE_BPS",
    "Job",
    "LinkPlan",
    "PathHealth",
    "Sandbox",
    "Side",
    "netem_available",
    "plan_link",
    "reap_stale",
]
