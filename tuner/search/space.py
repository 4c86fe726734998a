"""The search space of a workload kind, derived from the knob catalogue.

Every dimension is one knob searched over a short, ordered list of *levels*: buffer sizes and queue
lengths on a log scale, flags, modes and algorithms as they are. ``None`` as a level means "the
application does not set it" (a socket option left alone). The baseline value of each knob (what runs
when nothing is set: the live values of the sandbox namespace and the host) is always one of its levels,
so the baseline is a point of the space.

A point (one level index per dimension) becomes a :class:`Candidate`: the *changes* from the baseline,
repaired so that every catalogue rule holds (ordered triples stay ordered, a socket value capped by a
sysctl gets that sysctl raised) and then checked as an :class:`tuner.knobs.Assignment`. A point that
cannot be repaired is rejected; nothing unchecked ever reaches a probe. So is a setting the kind's probe
could not judge over the space's path (:attr:`tuner.kinds.spec.KindSpec.unjudgeable`: keepalive timers
too slow for the healthy phase to show their risk), which the objective would refuse whatever it
measured. Building the space is pure.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.errors import InputError, KnobError
from tuner.kinds import spec
from tuner.knobs import (
    CONSTRAINTS,
    Algorithm,
    Assignment,
    Flag,
    IntChoice,
    IntRange,
    KernelFacts,
    Knob,
    OrderedTuple,
    Value,
    ceiling,
    get_knob,
    json_value,
)
from tuner.probe.sockopts import EMULATED_HOST_KNOBS
from tuner.workload import NetworkPath, WorkloadKind

__all__ = [
    "Candidate",
    "Dimension",
    "Space",
    "assignment_key",
    "build_space",
    "knob_cost",
    "searchable_knobs",
    "space_knobs",
]

# Socket options that only act when another one is on: setting them turns it on (a keepalive timer
# without SO_KEEPALIVE never fires, so such a candidate would measure the same as the baseline).
_REQUIRES: Mapping[str, tuple[str, Value]] = {
    "TCP_KEEPIDLE": ("SO_KEEPALIVE", True),
    "TCP_KEEPINTVL": ("SO_KEEPALIVE", True),
    "TCP_KEEPCNT": ("SO_KEEPALIVE", True),
}

# Knobs whose value is a queue length: like buffers, a larger one holds more memory.
_QUEUE_KNOBS = frozenset(
    {"backlog", "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.core.netdev_max_backlog"}
)


def _log_levels(lo: int, hi: int, factor: int) -> tuple[int, ...]:
    out, v = [], lo
    while v < hi:
        out.append(v)
        v *= factor
    out.append(hi)
    return tuple(out)


def _default_levels(name: str, facts: KernelFacts | None) -> tuple[Value | None, ...]:
    knob = get_knob(name)
    d = knob.domain
    unset: tuple[None, ...] = (None,) if knob.set_by_application and not isinstance(d, Flag) else ()
    if isinstance(d, Flag):
        return (False, True)
    if isinstance(d, IntChoice):
        return unset + d.values
    if isinstance(d, Algorithm):
        if facts is None:
            return (*unset, "cubic", "reno", "bbr")
        # a namespace may only select algorithms the host allows; a socket (as root) any built one
        offered = facts.congestion_allowed if knob.is_sysctl else facts.congestion_available
        return unset + tuple(sorted(offered & facts.congestion_available or offered))
    if isinstance(d, IntRange):
        lo, hi = d.bounds
        if d.log:
            return unset + _log_levels(lo, hi, 16 if d.unit == "bytes" else 8)
        return unset + tuple(sorted({lo, (lo + hi) // 2, hi}))
    if isinstance(d, OrderedTuple):
        if not d.search_parts:
            raise InputError(
                f"{name} cannot be searched (no part of it is tunable)",
                hint="set it in a profile by hand instead",
            )
        lo = d.search_lo if d.search_lo is not None else d.lo
        hi = d.search_hi if d.search_hi is not None else d.hi
        return _log_levels(lo, hi, 16) if d.log else tuple(sorted({lo, (lo + hi) // 2, hi}))
    raise InputError(f"{name} cannot be searched", hint="set it in a profile by hand instead")


def _unset_value(knob: Knob, baseline: Mapping[str, Value]) -> float | None:
    """The value in effect while ``knob`` is unset, when that is a number on its scale: the sysctl it
    inherits (its value in ``baseline``, if known) or the catalogue's constant."""
    unset = baseline.get(knob.unset) if isinstance(knob.unset, str) else knob.unset
    if isinstance(unset, (int, float)) and not isinstance(unset, bool):
        return float(unset)
    return None


def _ranked_key(unset: float) -> Callable[[Value | None], tuple[int, Any]]:
    """A sort key that puts ``None`` where the value it stands for falls (after an equal level)."""

    def key(v: Value | None) -> tuple[int, Any]:
        return (1, (unset, 1)) if v is None else (1, (v, 0))

    return key


def _sort_key(v: Value | None) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, (int, float)):
        return (1, v)
    return (2, str(v))


@dataclass(frozen=True)
class Dimension:
    """One searched knob. ``part`` names the searched part of an ordered tuple (tcp_rmem: 2, the max).
    ``unset`` is the value the kernel uses while a socket option is left unset, where it is known and on
    the option's own scale (see :attr:`Knob.unset`): the levels are then ordered with ``None`` at its
    rank (TCP_KEEPIDLE: 1, 2, 3, unset = 7200 s), and a sampler may treat them as a scale."""

    knob: str
    levels: tuple[Value | None, ...]
    ordered: bool = True
    part: int | None = None
    unset: float | None = None

    def index_of(self, value: Value | None) -> int | None:
        try:
            return self.levels.index(value)
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"knob": self.knob, "levels": list(self.levels), "ordered": self.ordered}
        if self.part is not None:
            d["part"] = self.part
        if self.unset is not None:  # JSON has no infinity: an unset that means no limit says so
            d["unset"] = self.unset if math.isfinite(self.unset) else "no limit"
        return d


@dataclass(frozen=True)
class Candidate:
    """A point of the space as the probe will run it: the changes from the baseline, checked."""

    point: tuple[int, ...]
    assignment: Assignment  # only knobs that differ from the baseline
    repairs: tuple[str, ...] = ()  # what was adjusted to satisfy the catalogue's rules

    @property
    def key(self) -> str:
        """A stable identity of the assignment (two points may repair to the same one)."""
        return assignment_key(self.assignment)


def assignment_key(assignment: Mapping[str, Value]) -> str:
    """A stable text identity of an assignment, equal for equal assignments."""
    return repr(sorted((k, json_value(v)) for k, v in assignment.items()))


@dataclass(frozen=True)
class Space:
    """The dimensions searched for one workload kind, with the baseline they are measured against."""

    kind: WorkloadKind
    dimensions: tuple[Dimension, ...]
    baseline: Mapping[str, Value] = field(default_factory=dict)  # knob -> value in effect when not set
    facts: KernelFacts | None = None
    # the path the search measures over: a setting the kind's probe could not judge on it is no candidate
    # (KindSpec.unjudgeable); without a path every setting is one
    path: NetworkPath | None = None

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.knob for d in self.dimensions))

    @property
    def size(self) -> int:
        return math.prod(len(d.levels) for d in self.dimensions)

    def _baseline_level(self, dim: Dimension) -> Value | None:
        base = self.baseline.get(dim.knob)
        if base is None:
            return False if isinstance(get_knob(dim.knob).domain, Flag) else None
        return base[dim.part] if dim.part is not None else base  # type: ignore[index]

    def baseline_point(self) -> tuple[int, ...]:
        point = []
        for dim in self.dimensions:
            idx = dim.index_of(self._baseline_level(dim))
            if idx is None:  # build_space always adds the baseline level; a hand-made space may not
                raise InputError(f"the baseline value of {dim.knob} is not one of its levels")
            point.append(idx)
        return tuple(point)

    def anchor(self) -> tuple[int, ...] | None:
        """The kind's textbook setting for the space's path (:attr:`KindSpec.path_anchor`) as a point: each
        knob it names at its level where the baseline is lower; ``None`` without one, or when the
        baseline already holds it."""
        rule = spec(self.kind).path_anchor
        if rule is None or self.path is None:
            return None
        want = rule(self.path)
        base = self.baseline_point()
        point = list(base)
        for i, dim in enumerate(self.dimensions):
            if dim.knob not in want:
                continue
            current = self._baseline_level(dim)
            if isinstance(current, int) and current >= want[dim.knob]:
                continue
            idx = dim.index_of(want[dim.knob])
            if idx is not None:
                point[i] = idx
        return tuple(point) if tuple(point) != base else None

    def points(self) -> Iterator[tuple[int, ...]]:
        """Every point of the space, in lexicographic order of level indices."""
        return itertools.product(*(range(len(d.levels)) for d in self.dimensions))

    def values(self, point: Sequence[int]) -> dict[str, Value | None]:
        """The full value of every searched knob at ``point`` (``None``: not set), before repair."""
        if len(point) != len(self.dimensions):
            raise ValueError(
                f"point {tuple(point)} has {len(point)} coordinates, the space {len(self.dimensions)}"
            )
        out: dict[str, Value | None] = {}
        for dim, idx in zip(self.dimensions, point):
            level = dim.levels[idx]
            if dim.part is None:
                out[dim.knob] = level
                continue
            base = out.get(dim.knob) or self.baseline.get(dim.knob)
            if not isinstance(base, tuple):
                raise InputError(
                    f"the baseline value of {dim.knob} is unknown", hint="read it from the namespace"
                )
            parts = list(base)
            parts[dim.part] = int(level)  # type: ignore[arg-type]
            for i in range(dim.part - 1, -1, -1):  # keep min <= default <= max
                parts[i] = min(parts[i], parts[i + 1])
            for i in range(dim.part + 1, len(parts)):
                parts[i] = max(parts[i], parts[i - 1])
            out[dim.knob] = tuple(parts)
        return out

    def candidate(self, point: Sequence[int]) -> Candidate:
        """The checked assignment for ``point``; raises :class:`KnobError` when no repair makes it valid,
        or when the kind's probe could not judge it over the space's path (:attr:`KindSpec.unjudgeable`)."""
        values = self.values(point)
        changes: dict[str, Value] = {}
        for name, v in values.items():
            base = self.baseline.get(name)
            if base is None and isinstance(get_knob(name).domain, Flag):
                base = False
            if v is not None and v != base:
                changes[name] = v
        repairs: list[str] = []
        for name in list(changes):
            if name in _REQUIRES:
                other, on = _REQUIRES[name]
                if changes.get(other, self.baseline.get(other)) != on:
                    changes[other] = on
                    repairs.append(f"{other} turned on ({name} only acts with it)")
        dims = {d.knob: d for d in self.dimensions if d.part is None}
        for _ in range(len(CONSTRAINTS) + 1):
            moved = False
            for c in CONSTRAINTS:
                a, b = c.knobs
                if a not in changes:
                    continue
                # a socket value capped by a sysctl is capped in the kernel: the cap must be raised
                binding = get_knob(a).set_by_application
                current = changes.get(b, self.baseline.get(b) if binding else None)
                if current is None or c.holds(changes[a], current):
                    continue
                need = ceiling(changes[a])
                if b in dims:
                    higher = [
                        v
                        for v in dims[b].levels
                        if isinstance(v, int) and not isinstance(v, bool) and v >= need
                    ]
                    if not higher:
                        raise KnobError(
                            a,
                            f"{c.message}, and no level of {b} is high enough",
                            value=changes[a],
                            hint=c.hint,
                        )
                    need = min(higher)
                changes[b] = get_knob(b).validate(need)
                repairs.append(f"{b} raised to {need} ({c.message})")
                moved = True
            if not moved:
                break
        # a repair may bring a knob back to its baseline value (somaxconn 1024 raised to the live 4096)
        changes = {k: v for k, v in changes.items() if v != self.baseline.get(k)}
        unjudgeable = spec(self.kind).unjudgeable
        if unjudgeable is not None and self.path is not None and changes:
            why = unjudgeable({**self.baseline, **changes}, self.path)
            if why is not None:
                raise KnobError(why[0], why[1], value=changes.get(why[0]))
        checked = Assignment.checked(changes, self.facts)
        return Candidate(self.point_of(checked) or tuple(point), checked, tuple(repairs))

    def point_of(self, assignment: Mapping[str, Value]) -> tuple[int, ...] | None:
        """The point whose levels give ``assignment`` (knobs not in it at their baseline), if any."""
        point = []
        for dim in self.dimensions:
            if dim.knob in assignment:
                v = assignment[dim.knob]
                level = v[dim.part] if dim.part is not None else v  # type: ignore[index]
            else:
                level = self._baseline_level(dim)
            idx = dim.index_of(level)
            if idx is None:
                return None
            point.append(idx)
        return tuple(point)

    def cost(self, assignment: Mapping[str, Value]) -> float:
        """How much a setting costs to run: see :func:`knob_cost`; the baseline costs 0."""
        return sum(knob_cost(name, value, self.baseline.get(name)) for name, value in assignment.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "dimensions": [d.to_dict() for d in self.dimensions],
            "baseline": {k: json_value(v) for k, v in sorted(self.baseline.items())},
        }


def knob_cost(name: str, value: Value, baseline: Value | None) -> float:
    """The cost ordering used to prefer the cheaper of two settings that perform the same within noise.

    Each changed knob costs 0.5 (something to deploy and keep), plus a resource term: buffers and
    queues cost log2 of how many times larger than the baseline they are (memory held); keepalive and
    user timers cost log2 of how many times shorter they are (more probe packets, earlier give-up);
    turning keepalive on costs 1 (probe traffic); TCP_QUICKACK costs 1 (re-armed after every read).
    Smaller buffers, fewer probes, fewer changes, fewer system calls: cheaper.
    """
    knob = get_knob(name)
    cost = 0.5
    d = knob.domain
    unit = getattr(d, "unit", "")
    if isinstance(d, (IntRange, OrderedTuple)) and (unit == "bytes" or name in _QUEUE_KNOBS):
        v = ceiling(value)
        ref = (
            ceiling(baseline) if baseline is not None else (d.bounds[0] if isinstance(d, IntRange) else d.lo)
        )
        cost += max(0.0, math.log2(max(v, 1) / max(ref, 1)))
    elif isinstance(d, IntRange) and unit in ("s", "ms"):
        ref = int(baseline) if baseline is not None else d.bounds[1]  # type: ignore[arg-type]
        cost += max(0.0, math.log2(max(ref, 1) / max(int(value), 1)))  # type: ignore[arg-type]
    elif isinstance(d, Flag) and name == "SO_KEEPALIVE" and value:
        cost += 1.0
    elif isinstance(d, Flag) and name == "TCP_QUICKACK" and value:
        cost += 1.0  # not sticky: the application must set it again after every read (a system call each)
    return cost


def space_knobs(kind: WorkloadKind, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
    """The knobs searched for ``kind`` with ``add`` and without ``remove``; checks the names (cheap: call
    it before building anything expensive)."""
    for name in [*add, *remove]:
        get_knob(name)  # unknown names fail here with a suggestion
    record = spec(kind)
    inert = record.inert_knobs
    for name in add:
        if name in inert:
            raise InputError(
                f"{name} cannot move the {kind.value} probe's metric: {inert[name]}",
                hint="it is not searched for this kind; set it in a profile by hand if you need it",
            )
    unknown_removed = [n for n in remove if n not in record.knobs and n not in add]
    if unknown_removed:
        raise InputError(
            f"--no-knob {', '.join(unknown_removed)}: not in the {kind.value} search space",
            hint=f"the space holds: {', '.join(record.knobs)}",
        )
    names = [n for n in dict.fromkeys([*record.knobs, *add]) if n not in remove]
    if not names:
        raise InputError("the search space is empty", hint="keep at least one knob (drop a --no-knob)")
    for name in names:
        knob = get_knob(name)
        if knob.host_only and name not in EMULATED_HOST_KNOBS:
            raise InputError(
                f"{name} cannot be searched: it is host-wide and a probe cannot emulate it",
                hint=f"searchable host knobs: {', '.join(EMULATED_HOST_KNOBS)}",
            )
        if isinstance(knob.domain, OrderedTuple) and not knob.domain.search_parts:
            raise InputError(
                f"{name} cannot be searched (no part of it is tunable)",
                hint="set it in a profile by hand instead",
            )
    return names


def build_space(
    kind: WorkloadKind,
    baseline: Mapping[str, Value],
    *,
    facts: KernelFacts | None = None,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    path: NetworkPath | None = None,
) -> Space:
    """The space for ``kind``: its default knobs plus ``add`` minus ``remove``.

    ``baseline`` holds the value in effect for each knob when nothing is set (sysctls: the live value
    in the sandbox namespace or on the host; socket options: absent). It is always one of the levels.
    A knob's levels are the kind's own (:attr:`KindSpec.levels`), else derived from its domain; with a
    ``path``, those the kind derives from it (a bulk search's buffers from its bandwidth-delay product,
    plus the kernel default, which is the baseline) replace them.
    """
    names = space_knobs(kind, add, remove)
    record = spec(kind)
    from_path = record.path_level_map(path)
    dims: list[Dimension] = []
    for name in names:
        knob = get_knob(name)
        levels: list[Value | None] = list(record.levels.get(name) or _default_levels(name, facts))
        if name in from_path:
            levels = [*([None] if knob.set_by_application else []), *from_path[name]]
        part = None
        if isinstance(knob.domain, OrderedTuple):
            part = knob.domain.search_parts[-1] if knob.domain.search_parts else None
            if part is None:
                raise InputError(f"{name} cannot be searched (no part of it is tunable)")
        if isinstance(knob.domain, Algorithm) and facts is not None:
            offered = facts.congestion_allowed if knob.is_sysctl else facts.congestion_available
            levels = [v for v in levels if v is None or v in offered]
        base = baseline.get(name)
        if base is not None:
            base_level = base[part] if part is not None else base  # type: ignore[index]
            if base_level not in levels:
                levels.append(base_level)
        elif isinstance(knob.domain, Flag):
            pass
        elif knob.set_by_application and None not in levels:
            levels.insert(0, None)
        elif not knob.set_by_application:
            raise InputError(
                f"the live value of {name} is unknown, so it cannot be searched",
                hint="this kernel or namespace may lack it; drop it with --no-knob",
            )
        unset = _unset_value(knob, baseline) if None in levels else None
        levels = sorted(dict.fromkeys(levels), key=_sort_key if unset is None else _ranked_key(unset))
        ordered = not isinstance(knob.domain, (Algorithm, IntChoice))
        dims.append(Dimension(name, tuple(levels), ordered, part, unset))
    return Space(kind, tuple(dims), dict(baseline), facts, path)


def searchable_knobs(kind: WorkloadKind, names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Of ``names`` (e.g. the knobs a symptom names), those a search of ``kind`` can use, and the others
    with the reason each is left out (inert for the kind's probe, host-wide and not emulated, or not
    searchable at all)."""
    keep: list[str] = []
    left: dict[str, str] = {}
    inert = spec(kind).inert_knobs
    for name in dict.fromkeys(names):
        knob = get_knob(name)
        if name in inert:
            left[name] = inert[name]
        elif knob.host_only and name not in EMULATED_HOST_KNOBS:
            left[name] = "host-wide, and a probe cannot emulate it"
        elif isinstance(knob.domain, OrderedTuple) and not knob.domain.search_parts:
            left[name] = "no part of it is tunable"
        else:
            keep.append(name)
    return keep, left
