"""scikit-optimize behind a small interface: a Gaussian-process optimiser over discrete level indices.

A dimension is either a scale (``ordered``: an integer range, so neighbouring levels are alike) or a set
of categories (one-hot: congestion control algorithms, on/off switches, "unset" next to values). The
optimiser's own random initial points are not used: the caller tells it a space-filling design first
(``initial_points`` is how many tells come before the model leads).

The only module that imports scikit-optimize (and, through it, numpy and scikit-learn). Callers pass
plain descriptions of the dimensions (how many levels, whether they form a scale) and get back plain
tuples of ``int``; no skopt or numpy type leaves this module. scikit-optimize is imported lazily (it
takes about two seconds), so importing this module is cheap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["GaussianProcessOptimizer", "LevelDimension"]


@dataclass(frozen=True)
class LevelDimension:
    """A dimension of ``size`` levels indexed 0..size-1; ``ordered`` when the levels form a scale."""

    size: int
    ordered: bool = True


class GaussianProcessOptimizer:
    """Ask/tell Bayesian optimisation (GP surrogate, expected improvement) minimising a float loss."""

    def __init__(self, dimensions: Sequence[LevelDimension], *, seed: int, initial_points: int) -> None:
        if not dimensions:
            raise ValueError("a search space needs at least one dimension")
        from skopt import Optimizer  # lazy: importing skopt is slow
        from skopt.space import Categorical, Integer

        skdims: list[Any] = []
        for d in dimensions:
            if d.size < 1:
                raise ValueError("a dimension needs at least one level")
            if d.size == 1:
                skdims.append(Categorical([0]))
            elif d.ordered and d.size > 2:
                skdims.append(Integer(0, d.size - 1))
            else:
                skdims.append(Categorical(list(range(d.size)), transform="onehot"))
        self._sizes = tuple(d.size for d in dimensions)
        self._opt = Optimizer(
            skdims,
            base_estimator="GP",
            acq_func="EI",
            acq_optimizer="sampling",
            # the spaces hold at most a few hundred points: a thousand samples of the acquisition
            # function find its best as well as skopt's default ten thousand, ten times faster
            acq_optimizer_kwargs={"n_points": 1000},
            n_initial_points=max(1, initial_points),
            initial_point_generator="lhs",
            random_state=seed,
        )

    def ask(self) -> tuple[int, ...]:
        with warnings.catch_warnings():
            # skopt warns (and substitutes a random point) when its best guess was evaluated before
            warnings.simplefilter("ignore")
            point = self._opt.ask()
        return tuple(int(v) for v in point)

    def ask_many(self, n: int) -> list[tuple[int, ...]]:
        """``n`` points to measure at once (before any of them is told): the model's best, then each next
        one as if the ones before had come back at the best loss seen (a "constant liar"), which spreads
        a batch over the promising region instead of asking the same point ``n`` times."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            points = self._opt.ask(n_points=n, strategy="cl_min") if n > 1 else [self._opt.ask()]
        return [tuple(int(v) for v in p) for p in points]

    def tell(self, point: Sequence[int], loss: float) -> None:
        if len(point) != len(self._sizes) or not all(0 <= int(v) < n for v, n in zip(point, self._sizes)):
            raise ValueError(f"point {tuple(point)} is outside the space")
        if not math.isfinite(loss):
            raise ValueError("the loss told to the optimiser must be finite")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._opt.tell([int(v) for v in point], float(loss))
