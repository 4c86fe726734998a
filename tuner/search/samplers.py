"""Samplers: propose points of a :class:`~tuner.search.space.Space` and learn from their losses.

All three share one interface (ask/tell over tuples of level indices):

- :class:`SkoptSampler`: Bayesian optimisation, a Gaussian process with expected improvement
  (scikit-optimize, behind :mod:`tuner.adapters.skopt`); the default.
- :class:`RandomSampler`: uniform over the levels, seeded; avoids points it was already told about.
- :class:`GridSampler`: every point exactly once, in a deterministic order: the baseline's neighbours
  first (one knob changed, the space's first knob first), then two knobs changed, and so on
  (one-factor-at-a-time, then interactions).

A sampler never sees knob values, only indices; the study turns a point into a checked candidate.
"""

from __future__ import annotations

import random
from typing import Protocol, Sequence

from tuner.adapters.skopt import GaussianProcessOptimizer, LevelDimension
from tuner.errors import InputError
from tuner.search.space import Space

__all__ = ["Sampler", "SkoptSampler", "RandomSampler", "GridSampler", "SAMPLERS", "make_sampler"]

Point = tuple[int, ...]
GRID_LIMIT = 100_000


class Sampler(Protocol):
    name: str

    def ask(self) -> Point | None:
        """The next point to try, or ``None`` when the sampler has nothing left to propose."""

    def tell(self, point: Sequence[int], loss: float) -> None:
        """The loss measured at ``point`` (finite; larger is worse)."""


class SkoptSampler:
    name = "skopt"

    def __init__(self, space: Space, *, seed: int = 0, initial_points: int = 4) -> None:
        dims = [LevelDimension(len(d.levels), d.ordered) for d in space.dimensions]
        self._opt = GaussianProcessOptimizer(dims, seed=seed, initial_points=initial_points)

    def ask(self) -> Point | None:
        return self._opt.ask()

    def tell(self, point: Sequence[int], loss: float) -> None:
        self._opt.tell(tuple(point), loss)


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
                return point
        return point

    def tell(self, point: Sequence[int], loss: float) -> None:
        self._seen.add(tuple(point))


class GridSampler:
    name = "grid"

    def __init__(self, space: Space) -> None:
        if space.size > GRID_LIMIT:
            raise InputError(f"the grid over this space has {space.size} points",
                             hint="narrow it with --no-knob, or use --sampler skopt")
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


def make_sampler(name: str, space: Space, *, seed: int = 0, budget: int = 12) -> Sampler:
    if name == "skopt":
        # a few space-filling points before the model leads (the baseline, told first, is one of them)
        initial = max(2, min(len(space.dimensions) + 1, budget // 3)) + 1
        return SkoptSampler(space, seed=seed, initial_points=initial)
    if name == "random":
        return RandomSampler(space, seed=seed)
    if name == "grid":
        return GridSampler(space)
    raise InputError(f"unknown sampler {name!r}", hint=f"one of: {', '.join(SAMPLERS)}")
