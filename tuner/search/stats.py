"""Statistics of a gain between two noisy settings, with maintained tests (scipy.stats).

    iv = gain_interval(baseline_samples, candidate_samples, Goal.MIN, seed=0)
    iv.gain, iv.lo, iv.hi     # times better (1.0: the same) and its interval at iv.confidence
    iv.significant            # a claim: enough samples, the rank test rejects "no difference", and the
                              # interval lies on one side of 1
    iv.why_not                # "not enough samples to claim: ..." when there are too few

- The samples are one value per repeat (a block: a repeat's p99 is computed from that repeat's own
  requests), so repeats are the unit of independence.
- The test is the Mann-Whitney U test (``scipy.stats.mannwhitneyu``, exact for small samples without
  ties): distribution-free, and its false-positive rate stays at or below ``1 - confidence`` where a
  percentile bootstrap over 2-3 repeats does not.
- The interval is a percentile bootstrap of the ratio of medians (``scipy.stats.bootstrap``), seeded:
  the same samples always give the same interval. It describes the size of the gain; the claim needs
  the test as well.
- Below ``MIN_REPEATS`` samples on either side nothing is claimed.
- :func:`looks_confidence`: a study that adds repeats while the answer is unclear looks at the data
  several times; each look is tested at ``1 - (1 - confidence) / looks`` (Bonferroni) so that the whole
  sequence keeps the stated false-positive rate.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.search.objective import Goal, gain

if TYPE_CHECKING:
    import numpy as np  # numpy/scipy load only where a gain is judged (not in the daemon)

__all__ = ["CONFIDENCE", "MIN_REPEATS", "GainInterval", "gain_interval", "looks_confidence"]

CONFIDENCE = 0.95
MIN_REPEATS = 5  # samples (repeats) per side before any claim
_RESAMPLES = 2000
_EPS = 1e-12


@dataclass(frozen=True)
class GainInterval:
    """``gain`` times better (1.0: the same), with a ``confidence`` interval [lo, hi]."""

    gain: float
    lo: float
    hi: float
    confidence: float = CONFIDENCE
    p_value: float = 1.0  # two-sided Mann-Whitney U; 1.0 when not tested
    n_baseline: int = 0
    n_candidate: int = 0
    min_samples: int = MIN_REPEATS

    @property
    def enough(self) -> bool:
        return min(self.n_baseline, self.n_candidate) >= self.min_samples

    @property
    def significant(self) -> bool:
        """A difference beyond noise at ``confidence``: enough samples, the test and the interval agree."""
        return self.enough and self.p_value < 1.0 - self.confidence and (self.lo > 1.0 or self.hi < 1.0)

    @property
    def excludes_one(self) -> bool:
        return self.significant

    @property
    def why_not(self) -> str | None:
        """Why this comparison makes no claim (None when it is significant)."""
        if not self.enough:
            return (
                f"not enough samples to claim: {self.n_baseline} baseline and {self.n_candidate} candidate "
                f"repeats, at least {self.min_samples} per side are needed"
            )
        if self.significant:
            return None
        return (
            f"within noise (Mann-Whitney p = {self.p_value:.3g}, needs < {1.0 - self.confidence:.3g}; "
            f"{self.n_baseline} vs {self.n_candidate} repeats)"
        )

    def describe(self) -> str:
        if not self.enough:
            return f"{self.gain:.3g}x ({self.why_not})"
        return f"{self.gain:.3g}x ({self.lo:.3g}x..{self.hi:.3g}x at {self.confidence * 100:.4g}% confidence)"


def _ratio_statistic(direction: Goal) -> Any:
    import numpy as np  # see _ratio_statistic

    def stat(b: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        mb = np.maximum(np.median(b, axis=axis), _EPS)
        mc = np.maximum(np.median(c, axis=axis), _EPS)
        return mb / mc if direction is Goal.MIN else mc / mb

    return stat


def gain_interval(
    baseline: Sequence[float],
    candidate: Sequence[float],
    direction: Goal,
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    min_samples: int = MIN_REPEATS,
) -> GainInterval:
    """The gain of ``candidate`` over ``baseline`` (ratio of medians), its bootstrap interval and the
    Mann-Whitney p-value; see the module documentation."""
    if not baseline or not candidate:
        raise ValueError("both sides need samples")
    import numpy as np
    from scipy import stats as sps  # see _ratio_statistic

    b = np.asarray([float(x) for x in baseline])
    c = np.asarray([float(x) for x in candidate])
    point = gain(statistics.median(b.tolist()), statistics.median(c.tolist()), direction)
    nb, nc = len(b), len(c)
    if nb < 2 or nc < 2 or not (np.all(np.isfinite(b)) and np.all(np.isfinite(c))):
        return GainInterval(point, point, point, confidence, 1.0, nb, nc, min_samples)
    if np.ptp(b) == 0 and np.ptp(c) == 0:
        lo = hi = point  # no spread on either side: every resample gives the point
        p = 1.0 if b[0] == c[0] else _mwu(b, c)
        return GainInterval(point, lo, hi, confidence, p, nb, nc, min_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples (ties) only widen the percentile interval
        res = sps.bootstrap(
            (b, c),
            _ratio_statistic(direction),
            n_resamples=_RESAMPLES,
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            paired=False,
            rng=np.random.default_rng(seed),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo = hi = point
    return GainInterval(point, min(lo, point), max(hi, point), confidence, _mwu(b, c), nb, nc, min_samples)


def _mwu(b: np.ndarray, c: np.ndarray) -> float:
    from scipy import stats as sps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(sps.mannwhitneyu(b, c, alternative="two-sided", method="auto").pvalue)
    return p if math.isfinite(p) else 1.0


def looks_confidence(looks: int, confidence: float = CONFIDENCE) -> float:
    """The level each of ``looks`` tests must use so that all of them together keep ``confidence``."""
    return 1.0 - (1.0 - confidence) / max(1, looks)
