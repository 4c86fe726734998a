"""Samplers: propose points of a :class:`~tuner.search.space.Space` and learn from their losses.

All three share one interface (ask/tell over tuples of level indices):

- :class:`SkoptSampler`: a space-filling initial design that tries every level of every knob with few
  levels (congestion control algorithms, switches, "unset" vs values are categories, not a scale), then
  Bayesian optimisation, a Gaussian process with expected improvement (scikit-optimize, behind
  :mod:`tuner.adapters.skopt`); the default.
- :class:`RandomSampler`: uniform over the levels, seeded; avoids points it was already told about.
- :class:`GridSampler`: every point exactly once, in a deterministic order: the baseline's neighbours
  first (one knob changed, the space's first knob first), then two knobs changed, and so on
  (one-factor-at-a-time, then interactions).

A sampler never sees knob values, only indices; the study turns a point into a checked candidate.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol

from tuner.adapters.skopt import GaussianProcessOptimizer, LevelDimension
from tuner.errors import InputError, KnobError
from tuner.kinds import spec
from tuner.search.space import Dimension, Space
from tuner.workload import WorkloadKind

__all__ = [
    "DEFAULT_BUDGET",
    "SAMPLERS",
    "GridSampler",
    "RandomSampler",
    "Sampler",
    "SkoptSampler",
    "ask_batch",
    "default_budget",
    "design_size",
    "initial_design",
    "is_categorical",
    "make_sampler",
]

Point = tuple[int, ...]
GRID_LIMIT = 100_000
DEFAULT_BUDGET = 8  # search trials, unless the kind has its own (KindSpec.budget) or the user chooses


def default_budget(kind: WorkloadKind) -> int:
    """The trial budget of a search of ``kind`` when the user gives none: the kind's own, else 8."""
    return spec(kind).budget or DEFAULT_BUDGET


class Sampler(Protocol):
    name: str

    def ask(self) -> Point | None:
        """The next point to try, or ``None`` when the sampler has nothing left to propose."""

    def tell(self, point: Sequence[int], loss: float) -> None:
        """The loss measured at ``point`` (finite; larger is worse)."""


def ask_batch(sampler: Sampler, n: int) -> list[Point]:
    """Up to ``n`` distinct points to measure side by side before any of them is told. A sampler with
    its own batch rule (``ask_batch``: the skopt sampler's design, then the model's batch) gives it;
    any other is asked ``n`` times (the random and grid samplers never repeat a point they gave)."""
    own = getattr(sampler, "ask_batch", None)
    if own is not None:
        return list(own(n))
    out: list[Point] = []
    for _ in range(n):
        p = sampler.ask()
        if p is None:
            break
        if p not in out:
            out.append(p)
    return out


# A knob with at most this many levels is "few-level": the initial design tries each of its levels.
FEW_LEVELS = 8
_DESIGN_CANDIDATES = 200


def is_categorical(dim: Dimension) -> bool:
    """A dimension the model treats as categories, not as a scale: algorithms and choices (not
    ``ordered``), on/off switches, and any knob whose levels include "unset" (``None`` is not a size),
    unless unset stands for a known value on the knob's scale (a keepalive timer left at the kernel's
    default: the levels are ordered with it, see :attr:`Dimension.unset`)."""
    return not dim.ordered or len(dim.levels) <= 2 or (None in dim.levels and dim.unset is None)


def initial_design(space: Space, size: int, *, seed: int = 0) -> list[Point]:
    """A space-filling design of about ``size`` points that tries every level of every few-level knob.

    The baseline (measured before any design point) counts as having tried its own levels, so a knob
    of ``n`` levels needs ``n - 1`` design points; the design grows to that many when ``size`` is smaller.
    Each column is a shuffled, balanced sequence of its knob's levels (a Latin-hypercube over categories);
    of ``_DESIGN_CANDIDATES`` random designs the one kept covers most levels *after repair* (a point the
    catalogue repairs may land elsewhere), has no rejected, duplicate or baseline point, and has the
    largest smallest Hamming distance between its points (spread out). Pure and seeded.
    """
    sizes = [len(d.levels) for d in space.dimensions]
    base = space.baseline_point()
    few = [i for i, n in enumerate(sizes) if n <= FEW_LEVELS]
    size = max(size, *(sizes[i] - 1 for i in few), 1) if few else max(size, 1)
    size = min(size, space.size - 1)
    if size <= 0:
        return []
    rng = random.Random(seed)
    repaired: dict[Point, Point | None] = {}

    def repair(p: Point) -> Point | None:
        if p not in repaired:
            try:
                cand = space.candidate(p)
            except KnobError:
                repaired[p] = None
            else:
                repaired[p] = cand.point if cand.assignment else None  # the baseline again: wasted
        return repaired[p]

    best: tuple[tuple[int, int, int, int], list[Point]] | None = None
    for _ in range(_DESIGN_CANDIDATES):
        columns = []
        for i, n in enumerate(sizes):
            # the levels the baseline did not try come first, then every level again, balanced
            col = [lv for lv in range(n) if lv != base[i]]
            rng.shuffle(col)
            while len(col) < size:
                chunk = list(range(n))
                rng.shuffle(chunk)
                col.extend(chunk)
            columns.append(col[:size])
        points = list(dict.fromkeys(zip(*columns)))
        measured = [q for q in (repair(p) for p in points) if q is not None]
        distinct = list(dict.fromkeys(measured))
        covered = sum(len({q[i] for q in distinct} | {base[i]}) for i in few)
        spread = min(
            (sum(a != b for a, b in zip(p, q)) for j, p in enumerate(distinct) for q in distinct[j + 1 :]),
            default=0,
        )
        total = sum(
            sum(a != b for a, b in zip(p, q)) for j, p in enumerate(distinct) for q in distinct[j + 1 :]
        )
        key = (covered, len(distinct), spread, total)
        if best is None or key > best[0]:
            best = (key, points)
    assert best is not None
    # a point rejected, or repaired onto the baseline or onto another point, would be a trial lost (in a
    # space that the probe's limits thin out, such as keepalive's, most designs hold some): keep the
    # first of each setting and fill up with untried settings drawn at random
    kept: list[Point] = []
    settings: set[Point] = set()
    draws = iter(lambda: tuple(rng.randrange(n) for n in sizes), None)
    for p in itertools.chain(best[1], itertools.islice(draws, 50 * size)):
        if len(kept) >= size:
            break
        q = repair(p)
        if q is not None and q not in settings:
            kept.append(p)
            settings.add(q)
    return kept


def switch_screen(space: Space, limit: int) -> list[Point]:
    """A cheap screening step: the baseline with one on/off switch flipped, for up to ``limit`` switches
    (two-level knobs, in the space's order), in spaces with at least two switches. One switch often carries the whole effect (TCP_NODELAY in
    a Nagle trap); measured alone it is also the cheapest setting to recommend, which a design that
    changes several knobs at once never measures."""
    base = space.baseline_point()
    out: list[Point] = []
    if sum(1 for d in space.dimensions if len(d.levels) == 2) < 2:
        # one switch has no rival to be told apart from, and a switch alone is often inert (keepalive
        # on with the default 2-hour timers): on synthetic landscapes a lone switch's screen point only
        # cost trials (bench/search_seeds.py, keepalive 60% -> 30% of seeds within 95%)
        return out
    for i, d in enumerate(space.dimensions):
        if len(out) >= limit:
            break
        if len(d.levels) != 2:
            continue
        p = (*base[:i], 1 - base[i], *base[i + 1 :])
        try:
            if space.candidate(p).assignment:
                out.append(p)
        except KnobError:
            continue
    return out


def design_size(space: Space, budget: int) -> int:
    """How many space-filling points before the model leads: about a third of the budget (at least two,
    at most one more than the knobs), grown by :func:`initial_design` to cover every few-level knob.

    A kind measured side by side gets three quarters of it: its design is one batch, which takes about as
    long as one measurement, and the model's one batch after it shares its room with the elimination and
    the confirmation measured ahead (keepalive at 15: 11 and 4, the wall time of two batches)."""
    if spec(space.kind).side_by_side > 1:
        return max(2, 3 * budget // 4)
    return max(2, min(len(space.dimensions) + 1, budget // 3))


class SkoptSampler:
    """The initial design first (see :func:`initial_design`), then the Gaussian process. When the model
    proposes a point it was already told about, the sampler proposes an untried neighbour of the best
    point instead (one knob changed): the study would otherwise count a repeat and stop."""

    name = "skopt"

    def __init__(self, space: Space, *, seed: int = 0, initial_points: int = 4, screen: int = 0) -> None:
        dims = [LevelDimension(len(d.levels), not is_categorical(d)) for d in space.dimensions]
        self._design = list(
            dict.fromkeys(
                [
                    *([] if (anchor := space.anchor()) is None else [anchor]),
                    *switch_screen(space, screen),
                    *initial_design(space, initial_points, seed=seed),
                ]
            )
        )
        # the baseline is told first, then the design: the model leads after those tells
        self._opt = GaussianProcessOptimizer(dims, seed=seed, initial_points=len(self._design) + 1)
        self._sizes = tuple(len(d.levels) for d in space.dimensions)
        self._total = space.size
        self._rng = random.Random(seed)
        self._told: dict[Point, float] = {}

    @property
    def design(self) -> tuple[Point, ...]:
        return tuple(self._design)

    def ask(self) -> Point | None:
        while self._design:
            p = self._design.pop(0)
            if p not in self._told:
                return p
        if len(self._told) >= self._total:
            return None
        point = self._opt.ask()
        if point not in self._told:
            return point
        return self._neighbour()

    def ask_batch(self, n: int) -> list[Point]:
        """Up to ``n`` points at once: what is left of the design (alone: the model should lead only
        once it has been told the design), else the model's batch (:meth:`GaussianProcessOptimizer.ask_many`),
        a point already told replaced by an untried neighbour of the best."""
        design = [p for p in self._design if p not in self._told][:n]
        if design:
            self._design = [p for p in self._design if p not in design]
            return design
        if len(self._told) >= self._total:
            return []
        out: list[Point] = []
        for asked in self._opt.ask_many(n):
            point = self._neighbour(avoid=set(out)) if asked in self._told or asked in out else asked
            if point is not None and point not in out:
                out.append(point)
        return out

    def _neighbour(self, avoid: set[Point] | None = None) -> Point | None:
        taken = set(self._told) | (avoid or set())
        best = min(self._told, key=lambda p: self._told[p])
        near = [
            (*best[:i], lv, *best[i + 1 :])
            for i, n in enumerate(self._sizes)
            for lv in range(n)
            if lv != best[i]
        ]
        fresh = [p for p in near if p not in taken]
        if fresh:
            return self._rng.choice(fresh)
        for _ in range(1000):
            p = tuple(self._rng.randrange(n) for n in self._sizes)
            if p not in taken:
                return p
        return None

    def tell(self, point: Sequence[int], loss: float) -> None:
        p = tuple(int(v) for v in point)
        self._told[p] = min(loss, self._told.get(p, loss))
        self._opt.tell(p, loss)


class RandomSampler:
    name = "random"

    def __init__(self, space: Space, *, seed: int = 0) -> None:
        self._sizes = tuple(len(d.levels) for d in space.dimensions)
        self._rng = random.Random(seed)
        self._seen: set[Point] = set()
        self._total = space.size

    def ask(self) -> Point | None:
        if len(self._seen) >= self._total:
            return None
        for _ in range(1000):
            point = tuple(self._rng.randrange(n) for n in self._sizes)
            if point not in self._seen:
                break
        self._seen.add(point)  # given once: a batch asked before any tell holds no repeat
        return point

    def tell(self, point: Sequence[int], loss: float) -> None:
        self._seen.add(tuple(point))


class GridSampler:
    name = "grid"

    def __init__(self, space: Space) -> None:
        if space.size > GRID_LIMIT:
            raise InputError(
                f"the grid over this space has {space.size} points",
                hint="narrow it with --no-knob, or use --sampler skopt",
            )
        base = space.baseline_point()

        def order(p: Point) -> tuple[int, list[tuple[int, int]]]:
            changes = [(i, level) for i, (level, b) in enumerate(zip(p, base)) if level != b]
            return (len(changes), changes)  # fewer changes first; then the first knobs of the space first

        self._order = sorted(space.points(), key=order)
        self._next = 0
        self._seen: set[Point] = set()

    def ask(self) -> Point | None:
        while self._next < len(self._order) and self._order[self._next] in self._seen:
            self._next += 1
        if self._next >= len(self._order):
            return None
        point = self._order[self._next]
        self._next += 1
        return point

    def tell(self, point: Sequence[int], loss: float) -> None:
        self._seen.add(tuple(point))


SAMPLERS = ("skopt", "random", "grid")


def make_sampler(name: str, space: Space, *, seed: int = 0, budget: int | None = None) -> Sampler:
    """The sampler ``name`` for a search of ``budget`` trials (None: the kind's default)."""
    budget = budget or default_budget(space.kind)
    if name == "skopt":
        # a few space-filling points before the model leads (the baseline, told first, is one of them)
        return SkoptSampler(space, seed=seed, initial_points=design_size(space, budget), screen=budget // 4)
    if name == "random":
        return RandomSampler(space, seed=seed)
    if name == "grid":
        return GridSampler(space)
    raise InputError(f"unknown sampler {name!r}", hint=f"one of: {', '.join(SAMPLERS)}")
