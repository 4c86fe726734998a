"""Statistics of a gain between two noisy settings: a bootstrap interval of the ratio of medians.

Pure and deterministic (a seeded generator): the same samples always give the same interval.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Sequence

from tuner.search.objective import Direction, gain

__all__ = ["GainInterval", "gain_interval", "CONFIDENCE"]

CONFIDENCE = 0.95
_RESAMPLES = 2000


@dataclass(frozen=True)
class GainInterval:
    """``gain`` times better (1.0: the same), with a ``confidence`` interval [lo, hi]."""

    gain: float
    lo: float
    hi: float
    confidence: float = CONFIDENCE

    @property
    def excludes_one(self) -> bool:
        return self.lo > 1.0 or self.hi < 1.0


def gain_interval(baseline: Sequence[float], candidate: Sequence[float], direction: Direction, *,
                  seed: int = 0, confidence: float = CONFIDENCE) -> GainInterval:
    """Percentile bootstrap of gain(median(baseline), median(candidate)), resampling each side."""
    if not baseline or not candidate:
        raise ValueError("both sides need samples")
    point = gain(statistics.median(baseline), statistics.median(candidate), direction)
    rng = random.Random(seed)
    nb, nc = len(baseline), len(candidate)
    draws = []
    for _ in range(_RESAMPLES):
        b = statistics.median([baseline[rng.randrange(nb)] for _ in range(nb)])
        c = statistics.median([candidate[rng.randrange(nc)] for _ in range(nc)])
        draws.append(gain(b, c, direction))
    draws.sort()
    tail = (1.0 - confidence) / 2
    lo = draws[max(0, math.floor(tail * _RESAMPLES))]
    hi = draws[min(_RESAMPLES - 1, math.ceil((1.0 - tail) * _RESAMPLES) - 1)]
    return GainInterval(point, lo, hi, confidence)
