"""Constraints that couple knobs, and the live checks of what this kernel offers.

Pure functions over an assignment (knob name -> canonical value). The single-knob rules (ranges,
ordered triples) live in the domains; here are the rules that need two knobs or the kernel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tuner.errors import KnobError
from tuner.knobs.domains import Value, as_int, as_tuple
from tuner.knobs.sysctl import PROC_SYS, SysctlTree

__all__ = ["CONSTRAINTS", "Constraint", "KernelFacts", "ceiling", "violations"]


def ceiling(value: Value) -> int:
    """What a limit compares: the number itself, or the largest (last) part of an ordered tuple."""
    return as_tuple(value)[-1] if isinstance(value, tuple) else as_int(value)


@dataclass(frozen=True)
class Constraint:
    """``knobs[0]`` must not be above ``knobs[1]`` (a tuple compares by its max part)."""

    knobs: tuple[str, str]
    message: str
    hint: str

    def holds(self, a: Value, b: Value) -> bool:
        return ceiling(a) <= ceiling(b)


CONSTRAINTS: tuple[Constraint, ...] = (
    Constraint(
        ("SO_RCVBUF", "net.core.rmem_max"),
        "SO_RCVBUF is silently capped at net.core.rmem_max",
        "raise net.core.rmem_max or lower SO_RCVBUF",
    ),
    Constraint(
        ("SO_SNDBUF", "net.core.wmem_max"),
        "SO_SNDBUF is silently capped at net.core.wmem_max",
        "raise net.core.wmem_max or lower SO_SNDBUF",
    ),
    Constraint(
        ("net.core.rmem_default", "net.core.rmem_max"),
        "net.core.rmem_default is above net.core.rmem_max",
        "keep rmem_default <= rmem_max",
    ),
    Constraint(
        ("net.core.wmem_default", "net.core.wmem_max"),
        "net.core.wmem_default is above net.core.wmem_max",
        "keep wmem_default <= wmem_max",
    ),
    Constraint(
        ("net.ipv4.tcp_rmem", "net.core.rmem_max"),
        "tcp_rmem max is above net.core.rmem_max",
        "keep tcp_rmem max <= rmem_max",
    ),
    Constraint(
        ("net.ipv4.tcp_wmem", "net.core.wmem_max"),
        "tcp_wmem max is above net.core.wmem_max",
        "keep tcp_wmem max <= wmem_max",
    ),
    Constraint(
        ("backlog", "net.core.somaxconn"),
        "the listen backlog is silently capped at net.core.somaxconn",
        "raise net.core.somaxconn too",
    ),
)

_ALGORITHM_KNOBS = ("net.ipv4.tcp_congestion_control", "TCP_CONGESTION")


# tcp_mem/udp_mem thresholds (pages) below this fraction of RAM starve every socket (the kernel's own
# defaults are about 1/32..3/32 of RAM); [1, 1, 1] is accepted by the kernel and breaks networking.
MEMORY_FLOOR_DIVISOR = 1024
_MEMORY_KNOBS = ("net.ipv4.tcp_mem", "net.ipv4.udp_mem")


@dataclass(frozen=True)
class KernelFacts:
    """What the running kernel offers, as far as validation needs it."""

    congestion_available: frozenset[str]
    congestion_allowed: frozenset[str]
    memory_pages: int = 0  # the machine's RAM in pages (0: unknown; the memory floors are not checked)

    @classmethod
    def read(cls, root: Path = PROC_SYS) -> KernelFacts:
        tree = SysctlTree(root)

        def names(knob_path: str) -> frozenset[str]:
            try:
                return frozenset(tree.root.joinpath(*knob_path.split(".")).read_text().split())
            except OSError:
                return frozenset()

        try:
            pages = os.sysconf("SC_PHYS_PAGES")
        except (OSError, ValueError):
            pages = 0
        return cls(
            names("net.ipv4.tcp_available_congestion_control"),
            names("net.ipv4.tcp_allowed_congestion_control"),
            max(pages, 0),
        )


def violations(assignment: Mapping[str, Value], facts: KernelFacts | None = None) -> list[KnobError]:
    """Every coupled-constraint and kernel-support problem of ``assignment`` (values already validated)."""
    problems: list[KnobError] = []
    for c in CONSTRAINTS:
        a, b = c.knobs
        if a in assignment and b in assignment and not c.holds(assignment[a], assignment[b]):
            problems.append(
                KnobError(
                    a,
                    f"{c.message} ({assignment[a]!r} vs {b} = {assignment[b]!r})",
                    value=assignment[a],
                    hint=c.hint,
                )
            )
    if facts is not None and facts.congestion_available:
        for name in _ALGORITHM_KNOBS:
            algo = assignment.get(name)
            if algo is not None and algo not in facts.congestion_available:
                offered = " ".join(sorted(facts.congestion_available))
                problems.append(
                    KnobError(
                        name,
                        f"congestion control {algo!r} is not available on this kernel",
                        value=algo,
                        hint=f"this kernel offers: {offered} (or load the module tcp_{algo})",
                    )
                )
    if facts is not None and facts.memory_pages:
        floor = max(facts.memory_pages // MEMORY_FLOOR_DIVISOR, 1)
        for name in _MEMORY_KNOBS:
            triple = assignment.get(name)
            if isinstance(triple, tuple) and min(triple) < floor:
                problems.append(
                    KnobError(
                        name,
                        f"{min(triple)} pages is below the floor of {floor} pages (1/{MEMORY_FLOOR_DIVISOR} of "
                        f"this machine's memory): sockets would stall under memory pressure",
                        value=list(triple),
                        hint=f"give each threshold at least {floor} pages, or leave the knob out",
                    )
                )
    return problems
