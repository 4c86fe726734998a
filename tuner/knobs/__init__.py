"""The knob catalogue: what can be tuned, how values are validated, read and written."""

from tuner.knobs.assignment import Assignment, check_assignment, json_value
from tuner.knobs.catalogue import CATALOGUE, Knob, Scope, get_knob, knobs_by_scope
from tuner.knobs.constraints import CONSTRAINTS, KernelFacts, ceiling, violations
from tuner.knobs.domains import (
    INT_MAX,
    Algorithm,
    Domain,
    Flag,
    IntChoice,
    IntRange,
    OrderedTuple,
    Value,
    as_int,
    as_tuple,
)
from tuner.knobs.sysctl import PROC_SYS, SysctlTree

__all__ = [
    "CATALOGUE",
    "CONSTRAINTS",
    "INT_MAX",
    "PROC_SYS",
    "Algorithm",
    "Assignment",
    "Domain",
    "Flag",
    "IntChoice",
    "IntRange",
    "KernelFacts",
    "Knob",
    "OrderedTuple",
    "Scope",
    "SysctlTree",
    "Value",
    "as_int",
    "as_tuple",
    "ceiling",
    "check_assignment",
    "get_knob",
    "json_value",
    "knobs_by_scope",
    "violations",
]
