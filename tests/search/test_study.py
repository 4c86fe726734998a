"""Study mechanics: baseline first, ask/tell, failures, journal and resume, confirmation, verdicts.

The probe is replaced by ``SyntheticMeasure`` (a labelled, deterministic test double; see
search_doubles.py): these tests check the search machinery, not what a real workload gains.
"""

from __future__ import annotations

import json

import pytest
from search_doubles import FACTS, STOCK, SyntheticMeasure, rr_truth

from tuner.errors import InputError, StateError
from tuner.kinds import DEFAULT_WORKLOADS
from tuner.probe.measurement import Measurement
from tuner.search.journal import SearchJournal
from tuner.search.objective import parse_objective
from tuner.search.samplers import make_sampler
from tuner.search.space import Dimension, Space, build_space
from tuner.search.study import SearchConfig, Study, TrialRole, TrialState
from tuner.workload import NetworkPath, WorkloadKind

RR = WorkloadKind.RR


def _study(space, measure, config, journal=None, events=None):
    sampler = make_sampler(config.sampler, space, seed=config.seed, budget=config.budget)
    return Study(
        space,
        parse_objective(config.objective, space.kind),
        sampler,
        measure,
        config=config,
        journal=journal,
        progress=events.append if events is not None else None,
    )


def _header(space, config):
    return {
        "workload": DEFAULT_WORKLOADS[space.kind].to_dict(),
        "path": NetworkPath().to_dict(),
        "space": space.to_dict(),
        "objective": "default",
        "sampler": config.sampler,
        "seed": config.seed,
    }


@pytest.mark.parametrize("sampler", ["skopt", "random", "grid"])
def test_every_sampler_finds_nodelay_in_a_nagle_trap_and_reports_a_significant_gain(sampler):
    space = build_space(RR, STOCK, facts=FACTS)
    measure = SyntheticMeasure(RR, rr_truth)
    config = SearchConfig(budget=12, sampler=sampler, seed=3)
    events = []
    result = _study(space, measure, config, events=events).run()
    assert measure.calls[0] == {}  # the baseline first, with nothing set
    assert result.trials[0].role is TrialRole.BASELINE
    assert result.assignment.get("TCP_NODELAY") is True
    assert result.verdict.significant and result.verdict.interval.lo > 10
    assert events[-1].phase == "done" and events[-1].total == 12
    assert sum(1 for t in result.trials if t.role is TrialRole.SEARCH) <= 12


def test_a_trial_that_raises_is_recorded_as_failed_and_the_search_continues():
    space = build_space(RR, STOCK, facts=FACTS)
    measure = SyntheticMeasure(RR, rr_truth, fail_when=lambda a: a.get("TCP_QUICKACK") is True)
    result = _study(space, measure, SearchConfig(budget=10, sampler="grid")).run()
    failed = [t for t in result.trials if t.state is TrialState.FAILED]
    assert failed and all("synthetic probe failure" in t.error for t in failed)
    assert result.search_trials == 10  # failures count against the budget, search went on
    assert result.assignment.get("TCP_NODELAY") is True
    assert "TCP_QUICKACK" not in result.assignment


def test_a_failed_or_invalid_measurement_is_recorded_and_never_wins():
    space = build_space(RR, STOCK, facts=FACTS)
    inner = SyntheticMeasure(RR, rr_truth)

    def measure(a):
        m = inner(a)
        if a.get("TCP_NODELAY") and a.get("SO_SNDBUF"):
            return Measurement(
                workload=m.workload, path=m.path, assignment=a, failed=True, error="probe: boom"
            )
        if a.get("TCP_NODELAY") and a.get("SO_RCVBUF"):
            return Measurement(
                workload=m.workload,
                path=m.path,
                assignment=a,
                metrics=m.metrics,
                valid=False,
                invalid_reason="sandbox: 12 packets dropped",
            )
        return m

    result = _study(space, measure, SearchConfig(budget=30, sampler="grid")).run()
    states = {t.state for t in result.trials}
    assert {TrialState.FAILED, TrialState.INVALID} <= states
    assert "SO_SNDBUF" not in result.assignment and "SO_RCVBUF" not in result.assignment


def test_time_budget_and_an_exhausted_space_stop_the_search():
    space = build_space(RR, STOCK, facts=FACTS, remove=["SO_SNDBUF", "SO_RCVBUF"])
    result = _study(space, SyntheticMeasure(RR, rr_truth), SearchConfig(budget=50, sampler="grid")).run()
    assert result.stop_reason == "every point of the space was measured"
    assert result.search_trials == space.size - 1  # the baseline is one of the points
    result = _study(space, SyntheticMeasure(RR, rr_truth), SearchConfig(budget=50, time_budget=1e-6)).run()
    assert result.stop_reason == "time budget" and result.search_trials == 0


def test_leaders_and_baseline_are_measured_again_before_the_winner_is_declared():
    space = build_space(RR, STOCK, facts=FACTS)
    measure = SyntheticMeasure(RR, rr_truth)
    result = _study(space, measure, SearchConfig(budget=8, sampler="grid", confirm=2)).run()
    confirm = [t for t in result.trials if t.role is TrialRole.CONFIRM]
    arms = len({t.key for t in confirm})
    first = [t.key for t in confirm[:arms]]
    assert confirm[0].assignment == {} and arms >= 2  # the baseline and the leaders, side by side
    assert [t.key for t in confirm] == first * 2  # rounds of 3 repeats until 5 per side: two rounds
    assert result.baseline.repeats == 6  # judged on the side-by-side confirmation only


def test_only_leaders_that_could_still_win_are_confirmed():
    """A leader the search already shows more than 2x behind the best, or short of the gain a
    recommendation needs, is not measured again: the confirmation could not make it the choice."""
    space = build_space(RR, STOCK, facts=FACTS)
    result = _study(
        space, SyntheticMeasure(RR, rr_truth), SearchConfig(budget=8, sampler="grid", confirm=3)
    ).run()
    search = {t.key: t.score for t in result.trials if t.role is TrialRole.SEARCH and t.usable and t.score}
    confirmed = {t.key for t in result.trials if t.role is TrialRole.CONFIRM} - {"[]"}
    best = min(search.values(), key=lambda sc: sc.loss)
    behind = {k for k, sc in search.items() if sc.feasible and sc.value > 2 * best.value}
    assert confirmed and not confirmed & behind
    assert len(confirmed) < 3 or not behind  # the far ones were left out, not merely not reached


def test_a_gain_within_noise_keeps_the_defaults():
    space = build_space(RR, STOCK, facts=FACTS)
    flat = SyntheticMeasure(RR, lambda a: {"latency_p99_ms": 5.0}, noise=0.2)
    result = _study(space, flat, SearchConfig(budget=8, sampler="random", seed=1)).run()
    assert not result.verdict.significant
    assert result.assignment == {}
    assert result.verdict.text.startswith("no significant gain, keep the defaults")


class _FixedSampler:
    """Proposes a fixed list of points, then stops (a test double for the sampler interface)."""

    name = "fixed"

    def __init__(self, points):
        self.points = list(points)
        self.told = []

    def ask(self):
        return self.points.pop(0) if self.points else None

    def tell(self, point, loss):
        self.told.append((tuple(point), loss))


def test_the_cheaper_of_two_settings_equal_within_noise_wins():
    space = build_space(RR, STOCK, facts=FACTS)
    names = [d.knob for d in space.dimensions]
    dims = {d.knob: d for d in space.dimensions}
    expensive = [0] * len(names)
    expensive[names.index("TCP_NODELAY")] = 1
    expensive[names.index("SO_RCVBUF")] = dims["SO_RCVBUF"].levels.index(4 * 1024 * 1024)
    expensive[names.index("SO_SNDBUF")] = dims["SO_SNDBUF"].levels.index(4 * 1024 * 1024)
    cheap = [0] * len(names)
    cheap[names.index("TCP_NODELAY")] = 1
    truth = lambda a: {"latency_p99_ms": 0.2 if a.get("TCP_NODELAY") else 44.0}  # noqa: E731 - buffers irrelevant
    sampler = _FixedSampler([tuple(expensive), tuple(cheap)])
    config = SearchConfig(budget=5, confirm=2)
    result = Study(
        space, parse_objective(None, RR), sampler, SyntheticMeasure(RR, truth, noise=0.05), config=config
    ).run()
    assert result.assignment == {"TCP_NODELAY": True}


def test_no_candidate_breaking_a_rule_ever_reaches_the_probe():
    dims = (Dimension("backlog", (None, 128, 100000)), Dimension("net.core.somaxconn", (1024, 4096)))
    space = Space(WorkloadKind.BURST, dims, dict(STOCK), FACTS)
    seen = []

    def measure(a):
        seen.append(dict(a))
        return SyntheticMeasure(WorkloadKind.BURST, lambda _a: {"connect_p99_ms": 10.0})(a)

    result = _study(space, measure, SearchConfig(budget=10, sampler="grid")).run()
    assert all(a.get("backlog", 0) <= a.get("net.core.somaxconn", 4096) for a in seen)
    assert not any(a.get("backlog") == 100000 for a in seen)
    assert [t for t in result.trials if t.state is TrialState.REJECTED]


def test_journal_resume_continues_without_measuring_again(tmp_path):
    space = build_space(RR, STOCK, facts=FACTS)
    file = tmp_path / "j.jsonl"
    config = SearchConfig(budget=4, sampler="skopt", seed=2, journal=file, confirm=0)
    first = SyntheticMeasure(RR, rr_truth)
    _study(space, first, config, SearchJournal.create(file, _header(space, config))).run()
    lines = [json.loads(x) for x in file.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["seed"] == 2
    assert [r["number"] for r in lines[1:]] == list(range(5))  # baseline + 4 trials, each on its own line
    more = SearchConfig(budget=7, sampler="skopt", seed=2, journal=file, resume=True, confirm=0)
    second = SyntheticMeasure(RR, rr_truth)
    result = _study(space, second, more, SearchJournal.resume(file, _header(space, more))).run()
    assert result.search_trials == 7
    assert len(second.calls) == 3 and {} not in second.calls  # only the new trials; no new baseline
    keys = [t.key for t in result.trials if t.role is TrialRole.SEARCH]
    assert len(keys) == len(set(keys))  # nothing measured twice


def test_a_resume_with_a_different_search_is_refused(tmp_path):
    space = build_space(RR, STOCK, facts=FACTS)
    file = tmp_path / "j.jsonl"
    config = SearchConfig(budget=2, journal=file)
    SearchJournal.create(file, _header(space, config))
    with pytest.raises(InputError, match="different search: seed"):
        SearchJournal.resume(file, _header(space, SearchConfig(seed=9, journal=file)))
    with pytest.raises(InputError, match="already exists"):
        SearchJournal.create(file, _header(space, config))


def test_a_last_line_cut_short_is_dropped_on_resume_and_damage_elsewhere_is_an_error(tmp_path):
    space = build_space(RR, STOCK, facts=FACTS)
    file = tmp_path / "j.jsonl"
    config = SearchConfig(budget=2, journal=file, confirm=0)
    _study(
        space, SyntheticMeasure(RR, rr_truth), config, SearchJournal.create(file, _header(space, config))
    ).run()
    whole = file.read_bytes()
    file.write_bytes(whole + b'{"type":"trial","number":3,"ro')
    j = SearchJournal.resume(file, _header(space, config))
    assert len(j.records) == 3 and file.read_bytes() == whole
    lines = whole.split(b"\n")
    lines[1] = b"{damaged"
    file.write_bytes(b"\n".join(lines))
    with pytest.raises(StateError, match="line 2"):
        SearchJournal.resume(file, _header(space, config))


def test_the_best_candidate_is_simplified_to_the_knobs_that_matter():
    space = build_space(RR, STOCK, facts=FACTS)
    names = [d.knob for d in space.dimensions]
    dims = {d.knob: d for d in space.dimensions}
    point = [0] * len(names)
    point[names.index("TCP_NODELAY")] = 1
    point[names.index("TCP_QUICKACK")] = 1
    point[names.index("SO_RCVBUF")] = dims["SO_RCVBUF"].levels.index(4 * 1024 * 1024)
    truth = lambda a: {"latency_p99_ms": 0.2 if a.get("TCP_NODELAY") else 44.0}  # noqa: E731
    measure = SyntheticMeasure(RR, truth, noise=0.05)
    result = Study(
        space,
        parse_objective(None, RR),
        _FixedSampler([tuple(point)]),
        measure,
        config=SearchConfig(budget=3),
    ).run()
    assert result.assignment == {"TCP_NODELAY": True}
    simplify = [t for t in result.trials if t.role is TrialRole.SIMPLIFY]
    assert len(simplify) == 3 and all(
        t.assignment.get("TCP_NODELAY") for t in simplify
    )  # best again + 2 reductions


def test_simplification_ends_when_a_repair_would_undo_a_reduction():
    # backlog 32768 needs somaxconn >= 32768: putting somaxconn back to its baseline is repaired into
    # the very same setting, which must not count as a reduction (it once looped for ever).
    dims = (Dimension("backlog", (None, 512, 32768)), Dimension("net.core.somaxconn", (4096, 65535)))
    space = Space(WorkloadKind.BURST, dims, dict(STOCK), FACTS)
    truth = lambda a: {"connect_p99_ms": 2.0 if a.get("backlog", 0) >= 512 else 1000.0}  # noqa: E731
    measure = SyntheticMeasure(WorkloadKind.BURST, truth, noise=0.05)
    result = Study(
        space,
        parse_objective(None, WorkloadKind.BURST),
        _FixedSampler([(2, 1)]),
        measure,
        config=SearchConfig(budget=2),
    ).run()
    assert result.assignment.get("backlog", 0) >= 512
    assert len(measure.calls) < 20
