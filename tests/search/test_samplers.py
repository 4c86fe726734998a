"""Samplers: one interface, deterministic grid, and no candidate that breaks a catalogue rule reaches a probe."""

from __future__ import annotations

import itertools

import pytest
from search_doubles import FACTS, STOCK, SyntheticMeasure

from tuner.knobs import check_assignment
from tuner.search.objective import parse_objective
from tuner.search.samplers import (
    FEW_LEVELS,
    GridSampler,
    RandomSampler,
    SkoptSampler,
    ask_batch,
    is_categorical,
    make_sampler,
    switch_screen,
)
from tuner.search.space import build_space
from tuner.search.study import SearchConfig, Study
from tuner.workload import NetworkPath, WorkloadKind

MiB = 1024 * 1024
# live values where a searched max below the live default would unorder the triple, and a socket
# buffer above the host cap would be silently capped: both need repair before a probe may see them
TIGHT = {
    **STOCK,
    "net.ipv4.tcp_wmem": (4096, 2 * MiB, 4 * MiB),
    "net.ipv4.tcp_rmem": (4096, 4 * MiB, 6 * MiB),
}


def _ordered(v):
    return all(a <= b for a, b in itertools.pairwise(v))


@pytest.mark.parametrize("sampler", ["skopt", "random", "grid"])
def test_no_candidate_with_an_unordered_triple_or_a_capped_buffer_ever_reaches_a_probe(sampler):
    space = build_space(WorkloadKind.BULK, TIGHT, facts=FACTS, add=["SO_RCVBUF", "SO_SNDBUF"])
    seen = []

    def truth(a):
        seen.append(dict(a))
        return {"goodput_mbps": 10.0 + a.get("net.ipv4.tcp_wmem", (0, 0, 4 * MiB))[2] / MiB}

    study = Study(
        space,
        parse_objective(None, WorkloadKind.BULK),
        make_sampler(sampler, space, seed=5, budget=40),
        SyntheticMeasure(WorkloadKind.BULK, truth),
        config=SearchConfig(budget=40, sampler=sampler),
    )
    study.run()
    assert len(seen) >= 30
    for a in seen:
        assert check_assignment(a, FACTS) == a
        for triple in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
            assert _ordered(a.get(triple, TIGHT[triple]))
        effective = {**TIGHT, **a}
        assert effective.get("SO_RCVBUF", 0) <= effective["net.core.rmem_max"]
        assert effective.get("SO_SNDBUF", 0) <= effective["net.core.wmem_max"]
    # the repairs were needed: some proposal had a max below the live default
    assert any(a.get("net.ipv4.tcp_wmem", (0, 0, 4 * MiB))[2] < 2 * MiB for a in seen)


def test_grid_is_deterministic_visits_every_point_once_and_starts_next_to_the_baseline():
    space = build_space(WorkloadKind.RR, STOCK, facts=FACTS)
    base = space.baseline_point()
    a, b = GridSampler(space), GridSampler(space)
    order = []
    while (p := a.ask()) is not None:
        assert p == b.ask()
        order.append(p)
    assert len(order) == len(set(order)) == space.size
    changed = [sum(x != y for x, y in zip(p, base)) for p in order]
    assert changed == sorted(changed) and changed[0] == 0


def test_told_points_are_skipped_by_grid_and_random():
    space = build_space(WorkloadKind.RR, STOCK, facts=FACTS, remove=["SO_RCVBUF", "SO_SNDBUF"])
    for sampler in (GridSampler(space), RandomSampler(space, seed=1)):
        told = set()
        while (p := sampler.ask()) is not None:
            assert p not in told
            told.add(p)
            sampler.tell(p, 0.0)
        assert len(told) == space.size


def test_skopt_sampler_returns_plain_ints_and_learns_where_the_loss_is_low():
    space = build_space(WorkloadKind.RR, STOCK, facts=FACTS)
    s = SkoptSampler(space, seed=0, initial_points=4)
    nodelay = [d.knob for d in space.dimensions].index("TCP_NODELAY")
    late = []
    for i in range(14):
        p = s.ask()
        assert all(type(v) is int for v in p)
        s.tell(p, 0.0 if p[nodelay] == 1 else 4.0)
        if i >= 8:
            late.append(p[nodelay])
    assert sum(late) >= 4


SCENARIOS = [
    (WorkloadKind.RR, (), ()),
    (WorkloadKind.BULK, (), ()),
    (WorkloadKind.BURST, (), ()),
    (WorkloadKind.UDP, (), ()),
    (WorkloadKind.KEEPALIVE, (), ()),
    (WorkloadKind.BULK, ("TCP_CONGESTION",), ("net.ipv4.tcp_congestion_control",)),
]


@pytest.mark.parametrize("kind,add,remove", SCENARIOS)
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_measured_design_tries_every_level_of_every_few_level_knob(kind, add, remove, seed):
    """What the probe measures (after repair) before the model leads covers each level at least once,
    counting the baseline, which is measured first."""
    space = build_space(kind, STOCK, facts=FACTS, add=add, remove=remove)
    sampler = make_sampler("skopt", space, seed=seed, budget=8)
    measured = [space.baseline_point()]
    for p in sampler.design:
        measured.append(space.candidate(p).point)
    for i, dim in enumerate(space.dimensions):
        if len(dim.levels) <= FEW_LEVELS:
            assert {p[i] for p in measured} == set(range(len(dim.levels))), dim.knob
    assert len(set(measured)) == len(measured)  # no design point repeats the baseline or another


def test_a_study_tries_bbr_from_a_cubic_baseline_within_the_default_budget_for_every_seed():
    space = build_space(WorkloadKind.BULK, STOCK, facts=FACTS)
    for seed in range(10):
        seen = []

        def truth(a, seen=seen):
            seen.append(a.get("net.ipv4.tcp_congestion_control"))
            return {"goodput_mbps": 95.0 if a.get("net.ipv4.tcp_congestion_control") == "bbr" else 1.8}

        study = Study(
            space,
            parse_objective(None, WorkloadKind.BULK),
            make_sampler("skopt", space, seed=seed),
            SyntheticMeasure(WorkloadKind.BULK, truth),
            config=SearchConfig(confirm=0, seed=seed),
        )
        study.run()
        assert "bbr" in seen, seed


def test_categories_are_categories():
    space = build_space(WorkloadKind.BULK, STOCK, facts=FACTS, add=["SO_RCVBUF"])
    kinds = {d.knob: is_categorical(d) for d in space.dimensions}
    switches = {
        d.knob: is_categorical(d) for d in build_space(WorkloadKind.RR, STOCK, facts=FACTS).dimensions
    }
    assert kinds["net.ipv4.tcp_congestion_control"] and switches["TCP_NODELAY"]
    assert kinds["SO_RCVBUF"]  # "unset" is not a buffer size
    assert not kinds["net.ipv4.tcp_rmem"]  # a scale of sizes
    timers = {
        d.knob: is_categorical(d)
        for d in build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS, add=["TCP_USER_TIMEOUT"]).dimensions
    }
    # an unset timer is the kernel's default (7200 s, 75 s, 9 probes) or no limit: a value on the scale
    assert not any(timers[k] for k in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT"))
    assert timers["SO_KEEPALIVE"]
    unknown = {k: v for k, v in STOCK.items() if not k.startswith("net.ipv4.tcp_keepalive")}
    idle = build_space(WorkloadKind.KEEPALIVE, unknown, facts=FACTS).dimensions[1]
    assert idle.knob == "TCP_KEEPIDLE" and is_categorical(idle)  # the default unknown: unset is a category


def test_skopt_proposes_a_new_neighbour_of_the_best_instead_of_a_point_already_measured():
    space = build_space(WorkloadKind.RR, STOCK, facts=FACTS, remove=["SO_RCVBUF"])
    s = SkoptSampler(space, seed=3, initial_points=2)
    told = set()
    for _ in range(space.size):
        p = s.ask()
        if p is None:
            break
        assert p not in told
        told.add(p)
        s.tell(p, 1.0)
    assert len(told) == space.size


def test_the_screen_measures_each_switch_alone_before_the_design():
    space = build_space(WorkloadKind.RR, STOCK, facts=FACTS)
    sampler = make_sampler("skopt", space, seed=0, budget=8)
    first = [space.candidate(p).assignment for p in sampler.design[:2]]
    assert first == [{"TCP_NODELAY": True}, {"TCP_QUICKACK": True}]


def test_a_lone_switch_is_not_screened():
    space = build_space(WorkloadKind.BULK, STOCK, facts=FACTS)  # one switch: slow start after idle
    assert switch_screen(space, 4) == []


@pytest.mark.parametrize("name", ["skopt", "random", "grid"])
def test_a_batch_asked_before_any_tell_holds_distinct_points(name):
    space = build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS)
    sampler = make_sampler(name, space, seed=3, budget=16)
    seen: set[tuple[int, ...]] = set()
    for _ in range(3):
        batch = ask_batch(sampler, 6)
        assert batch and len(set(batch)) == len(batch) and not set(batch) & seen
        seen |= set(batch)
        for p in batch:
            sampler.tell(p, float(sum(p)))


def test_skopt_batches_give_the_design_alone_then_the_models_points():
    space = build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS)
    sampler = SkoptSampler(space, seed=1, initial_points=4)
    design = list(sampler.design)
    first = ask_batch(sampler, 16)
    assert first == design  # the design alone, though the batch had room for more: the model leads after it
    sampler.tell(space.baseline_point(), 5.0)
    for p in first:
        sampler.tell(p, float(p[0]))
    second = ask_batch(sampler, 4)
    assert len(second) == 4 and not set(second) & set(first)


def test_a_keepalive_design_over_a_lossy_path_spends_no_point_on_a_setting_the_probe_cannot_judge():
    from tuner.probe.keepalive import healthy_phase, timers_in_effect

    space = build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS, path=NetworkPath(loss=0.01))
    for seed in range(10):
        for point in make_sampler("skopt", space, seed=seed, budget=8).design:
            timers = timers_in_effect({**STOCK, **space.candidate(point).assignment})
            assert healthy_phase(0.5, timers, 0.01)[1]
