"""Claims that hold: a maintained test, a minimum number of samples, adaptive repeats, and the
false-positive rate and power of the decision on data with a known truth.

The probe is replaced by ``SyntheticMeasure`` (a labelled, seeded test double; see search_doubles.py):
these tests check the statistics and the decision code, not what a real workload gains.
"""

from __future__ import annotations

import random

import pytest
from scipy import stats as sps
from search_doubles import FACTS, STOCK, SyntheticMeasure, rr_truth

from tuner.errors import InputError
from tuner.search.objective import Goal, parse_objective
from tuner.search.samplers import make_sampler
from tuner.search.space import build_space
from tuner.search.stats import MIN_REPEATS, gain_interval, looks_confidence
from tuner.search.study import SearchConfig, Study, TrialRole
from tuner.workload import WorkloadKind

RR = WorkloadKind.RR


def _study(measure, config):
    space = build_space(RR, STOCK, facts=FACTS)
    sampler = make_sampler(config.sampler, space, seed=config.seed, budget=config.budget)
    return Study(space, parse_objective(config.objective, RR), sampler, measure, config=config)


def test_fewer_samples_than_the_minimum_claim_nothing_even_for_a_huge_gain():
    iv = gain_interval([44.0, 44.5, 43.9, 44.2], [0.2, 0.21, 0.19, 0.2], Goal.MIN)
    assert iv.gain > 200 and not iv.significant and not iv.enough
    assert iv.why_not.startswith("not enough samples to claim") and "at least 5" in iv.why_not
    one = gain_interval([44.0], [0.2], Goal.MIN)
    assert not one.significant and "1 baseline and 1 candidate" in one.why_not


def test_five_samples_per_side_can_claim_and_the_p_value_is_scipys():
    b, c = [44.0, 44.5, 43.9, 44.2, 44.8], [0.2, 0.21, 0.19, 0.2, 0.22]
    iv = gain_interval(b, c, Goal.MIN)
    assert iv.significant and iv.lo > 100 and iv.why_not is None
    assert iv.p_value == pytest.approx(sps.mannwhitneyu(b, c, alternative="two-sided").pvalue)


def test_the_interval_is_reproducible_for_a_seed():
    b, c = [5.0, 5.2, 4.9, 5.1, 5.3, 5.0], [4.0, 4.4, 4.1, 3.9, 4.2, 4.3]
    assert gain_interval(b, c, Goal.MIN, seed=7) == gain_interval(b, c, Goal.MIN, seed=7)


def test_a_a_false_positive_rate_is_at_most_5_percent_and_power_on_a_2x_effect_is_high():
    """400 seeded comparisons of one distribution against itself (6 vs 6 samples, 20% noise): the rate
    of "significant" verdicts stays at or below 5% (the old bootstrap gave 7-15% with 2-3 samples)."""
    rng = random.Random(12)

    def draw(mean):
        return [mean * rng.lognormvariate(0, 0.2) for _ in range(6)]

    false_pos = sum(gain_interval(draw(5.0), draw(5.0), Goal.MIN, seed=i).significant for i in range(400))
    assert false_pos / 400 <= 0.05
    power = sum(gain_interval(draw(10.0), draw(5.0), Goal.MIN, seed=i).significant for i in range(200))
    assert power / 200 >= 0.95


def test_looks_share_the_confidence():
    assert looks_confidence(1) == pytest.approx(0.95)
    assert looks_confidence(4) == pytest.approx(1 - 0.05 / 4)


def test_repeats_below_the_minimum_make_no_claim_and_say_why():
    measure = SyntheticMeasure(RR, rr_truth, repeats=1)
    result = _study(measure, SearchConfig(budget=4, sampler="grid", repeats=1)).run()
    assert not result.verdict.significant and result.assignment == {}
    assert "not enough samples to claim" in result.verdict.text and "--repeats 1" in result.verdict.text
    assert result.leader.get("TCP_NODELAY") is True  # the best candidate is still reported, unclaimed


def test_default_repeats_are_topped_up_to_the_minimum_and_then_a_claim_is_made():
    measure = SyntheticMeasure(RR, rr_truth, repeats=3)
    result = _study(measure, SearchConfig(budget=4, sampler="grid")).run()
    assert result.verdict.significant and result.assignment.get("TCP_NODELAY") is True
    assert (
        result.verdict.interval.n_baseline >= MIN_REPEATS
        and result.verdict.interval.n_candidate >= MIN_REPEATS
    )
    assert result.verdict.interval.confidence == pytest.approx(
        looks_confidence(6)
    )  # 2 first rounds .. 20 per side


def test_an_unclear_gain_gets_more_repeats_up_to_the_cap():
    """A 10% gain under 20% noise is unclear after the first look: rounds are added until the cap."""
    measure = SyntheticMeasure(
        RR, lambda a: {"latency_p99_ms": 4.5 if a.get("TCP_NODELAY") else 5.0}, noise=0.2, repeats=3, seed=0
    )
    result = _study(measure, SearchConfig(budget=3, sampler="grid", max_repeats=12)).run()
    confirm = [t for t in result.trials if t.role is TrialRole.CONFIRM and t.assignment == {}]
    assert len(confirm) == 4  # 2 rounds to reach 5 per side, 2 more up to 12


def test_the_cap_cannot_go_below_the_minimum():
    with pytest.raises(InputError, match="at least 5"):
        SearchConfig(max_repeats=3)
