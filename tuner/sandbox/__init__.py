"""Sandboxes: two network namespaces joined by an emulated path, created and always destroyed by tuner.

    from tuner.sandbox import Sandbox, Side, PathHealth, Job, reap_stale
"""

from tuner.sandbox.health import PathHealth
from tuner.sandbox.job import Job
from tuner.sandbox.layout import Side
from tuner.sandbox.links import DEFAULT_RATE_BPS, LinkPlan, plan_link
from tuner.sandbox.registry import reap_stale
from tuner.sandbox.sandbox import Sandbox, netem_available

__all__ = ["Sandbox", "Side", "PathHealth", "Job", "reap_stale", "netem_available", "LinkPlan", "plan_link",
           "DEFAULT_RATE_BPS"]
