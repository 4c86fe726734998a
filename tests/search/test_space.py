"""The search space: derived from the catalogue, baseline included, candidates repaired and checked."""

from __future__ import annotations

import itertools
import json

import pytest
from search_doubles import FACTS, STOCK

from tuner.errors import InputError, KnobError
from tuner.kinds import spec
from tuner.knobs import check_assignment
from tuner.search.space import build_space, knob_cost
from tuner.workload import NetworkPath, WorkloadKind


@pytest.mark.parametrize("kind", list(WorkloadKind))
def test_every_kind_has_a_space_whose_baseline_point_is_the_empty_assignment(kind):
    space = build_space(kind, STOCK, facts=FACTS)
    assert space.knobs == spec(kind).knobs
    cand = space.candidate(space.baseline_point())
    assert dict(cand.assignment) == {}


def test_buffer_levels_are_on_a_log_scale_and_include_the_baseline():
    space = build_space(WorkloadKind.BULK, STOCK, facts=FACTS)
    rmem = next(d for d in space.dimensions if d.knob == "net.ipv4.tcp_rmem")
    assert rmem.part == 2
    assert 6291456 in rmem.levels
    sizes = [v for v in rmem.levels if v != 6291456]
    ratios = {b / a for a, b in itertools.pairwise(sizes)}
    assert all(r >= 4 for r in ratios)


def test_every_point_of_every_space_gives_a_valid_assignment_or_is_rejected():
    for kind in WorkloadKind:
        space = build_space(kind, STOCK, facts=FACTS, add=())
        for point in space.points():
            try:
                cand = space.candidate(point)
            except KnobError:
                continue
            assert check_assignment(cand.assignment, FACTS) == dict(cand.assignment)
            effective = {**STOCK, **cand.assignment}
            # a socket value capped by a sysctl in the kernel never sits above its (effective) cap
            for sock, cap in (
                ("SO_RCVBUF", "net.core.rmem_max"),
                ("SO_SNDBUF", "net.core.wmem_max"),
                ("backlog", "net.core.somaxconn"),
            ):
                if sock in cand.assignment:
                    assert cand.assignment[sock] <= effective[cap]


def test_a_socket_buffer_above_the_host_cap_raises_the_cap():
    space = build_space(WorkloadKind.UDP, STOCK, facts=FACTS)
    point = tuple(
        d.levels.index(16 * 1024 * 1024) if d.knob == "SO_RCVBUF" else d.levels.index(212992)
        for d in space.dimensions
    )
    cand = space.candidate(point)
    assert cand.assignment["SO_RCVBUF"] == 16 * 1024 * 1024
    assert cand.assignment["net.core.rmem_max"] == 16 * 1024 * 1024
    assert cand.repairs


def test_a_backlog_above_somaxconn_raises_somaxconn_to_a_level_of_its_dimension():
    space = build_space(WorkloadKind.BURST, STOCK, facts=FACTS, add=["net.core.somaxconn"])
    dims = {d.knob: d for d in space.dimensions}
    point = list(space.baseline_point())
    names = [d.knob for d in space.dimensions]
    point[names.index("backlog")] = dims["backlog"].levels.index(32768)
    point[names.index("net.core.somaxconn")] = dims["net.core.somaxconn"].levels.index(1024)
    cand = space.candidate(point)
    assert cand.assignment["backlog"] == 32768
    assert cand.assignment["net.core.somaxconn"] == 65535
    assert cand.point[names.index("net.core.somaxconn")] == dims["net.core.somaxconn"].levels.index(65535)


def test_a_max_below_the_live_default_keeps_the_triple_ordered():
    live = {**STOCK, "net.ipv4.tcp_wmem": (4096, 2 * 1024 * 1024, 4194304)}
    space = build_space(WorkloadKind.BULK, live, facts=FACTS)
    dims = {d.knob: d for d in space.dimensions}
    point = list(space.baseline_point())
    names = [d.knob for d in space.dimensions]
    point[names.index("net.ipv4.tcp_wmem")] = dims["net.ipv4.tcp_wmem"].levels.index(1024 * 1024)
    cand = space.candidate(point)
    lo, default, hi = cand.assignment["net.ipv4.tcp_wmem"]
    assert lo <= default <= hi == 1024 * 1024


def test_congestion_levels_are_what_this_kernel_allows():
    from tuner.knobs import KernelFacts

    facts = KernelFacts(frozenset({"reno", "cubic", "bbr"}), frozenset({"reno", "bbr"}))
    space = build_space(WorkloadKind.BULK, {**STOCK, "net.ipv4.tcp_congestion_control": "bbr"}, facts=facts)
    cc = next(d for d in space.dimensions if d.knob == "net.ipv4.tcp_congestion_control")
    assert set(cc.levels) == {"reno", "bbr"}


def test_knob_flags_widen_and_narrow_the_space():
    space = build_space(WorkloadKind.RR, STOCK, facts=FACTS, add=["net.ipv4.tcp_wmem"], remove=["SO_RCVBUF"])
    assert space.knobs == ("TCP_NODELAY", "TCP_QUICKACK", "SO_SNDBUF", "net.ipv4.tcp_wmem")
    with pytest.raises(KnobError):
        build_space(WorkloadKind.RR, STOCK, add=["TCP_NODELAYY"])
    with pytest.raises(InputError):
        build_space(WorkloadKind.RR, STOCK, remove=["net.core.somaxconn"])
    with pytest.raises(InputError):
        build_space(WorkloadKind.RR, STOCK, add=["net.ipv4.tcp_mem"])


def test_cost_prefers_smaller_buffers_fewer_probes_and_fewer_changes():
    assert knob_cost("SO_RCVBUF", 64 * 1024 * 1024, None) > knob_cost("SO_RCVBUF", 256 * 1024, None)
    assert knob_cost("TCP_KEEPIDLE", 1, None) > knob_cost("TCP_KEEPIDLE", 30, None)
    space = build_space(WorkloadKind.RR, STOCK, facts=FACTS)
    assert space.cost({}) == 0
    assert space.cost({"TCP_NODELAY": True}) < space.cost({"TCP_NODELAY": True, "TCP_QUICKACK": True})


def test_a_repair_that_lands_on_the_baseline_value_leaves_the_knob_out():
    space = build_space(WorkloadKind.BURST, STOCK, facts=FACTS, add=["net.core.somaxconn"])
    dims = {d.knob: d for d in space.dimensions}
    names = [d.knob for d in space.dimensions]
    point = list(space.baseline_point())
    point[names.index("backlog")] = dims["backlog"].levels.index(4096)
    point[names.index("net.core.somaxconn")] = dims["net.core.somaxconn"].levels.index(1024)
    cand = space.candidate(point)
    assert dict(cand.assignment) == {"backlog": 4096}  # somaxconn back at the live 4096: not a change


def test_a_backlog_above_somaxconn_raises_somaxconn_when_it_is_no_dimension():
    space = build_space(WorkloadKind.BURST, STOCK, facts=FACTS)
    assert "net.core.somaxconn" not in space.knobs
    point = list(space.baseline_point())
    names = [d.knob for d in space.dimensions]
    point[names.index("backlog")] = space.dimensions[names.index("backlog")].levels.index(32768)
    cand = space.candidate(point)
    assert cand.assignment["backlog"] == 32768 and cand.assignment["net.core.somaxconn"] == 32768


def test_every_keepalive_setting_that_detects_is_measured_within_the_probes_window():
    from tuner.probe.keepalive import WINDOW_MIN

    space = build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS, add=["TCP_USER_TIMEOUT"])
    levels = {d.knob: [v for v in d.levels if v is not None] for d in space.dimensions}
    slowest = max(levels["TCP_KEEPIDLE"]) + max(levels["TCP_KEEPINTVL"]) * max(levels["TCP_KEEPCNT"])
    assert 1.5 * slowest <= WINDOW_MIN
    assert max(levels["TCP_USER_TIMEOUT"]) / 1e3 + max(levels["TCP_KEEPIDLE"]) <= WINDOW_MIN


def test_an_unset_timer_sits_on_its_scale_where_the_kernels_default_puts_it():
    def levels(baseline):
        space = build_space(WorkloadKind.KEEPALIVE, baseline, facts=FACTS, add=["TCP_USER_TIMEOUT"])
        return {d.knob: d.levels for d in space.dimensions}

    stock = levels(STOCK)
    assert stock["TCP_KEEPIDLE"] == (1, 2, 3, None)  # unset: net.ipv4.tcp_keepalive_time, 7200 s
    assert stock["TCP_KEEPCNT"] == (1, 2, 3, 4, None)  # 9 probes
    assert stock["TCP_USER_TIMEOUT"] == (1000, 3000, None)  # unset: no limit
    short = levels({**STOCK, "net.ipv4.tcp_keepalive_time": 2})
    assert short["TCP_KEEPIDLE"] == (1, 2, None, 3)  # a host that probes after 2 s idle
    space = build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS, add=["TCP_USER_TIMEOUT"])
    assert space.candidate(space.baseline_point()).assignment == {}  # unset is still the baseline
    json.dumps(space.to_dict(), allow_nan=False)  # a journal header: no infinity


def test_a_keepalive_search_leaves_the_user_timeout_to_a_user_who_asks_for_it():
    # on idle connections it only cuts the keepalive count short, which TCP_KEEPCNT does explicitly
    assert "TCP_USER_TIMEOUT" not in build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS).knobs
    assert "TCP_USER_TIMEOUT" in spec(WorkloadKind.KEEPALIVE).optional_knobs


def test_keepalive_settings_the_probe_could_not_judge_over_a_lossy_path_are_no_candidates():
    from tuner.probe.keepalive import healthy_phase, timers_in_effect

    lossy = build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS, path=NetworkPath(loss=0.01))
    judged, refused = {}, {}
    for point in lossy.points():
        values = lossy.values(point)
        try:
            cand = lossy.candidate(point)
        except KnobError as exc:
            refused[str(sorted((k, str(v)) for k, v in values.items()))] = exc
        else:
            judged[cand.key] = cand
    # every setting with keepalive on and an unset idle (2 hours) or interval (75 s) is left out, and
    # only those: what is left is exactly what the probe's healthy phase can judge
    assert len(judged) == 31 and refused
    assert all(
        "healthy phase" in str(e) and e.knob in {"TCP_KEEPIDLE", "TCP_KEEPINTVL"} for e in refused.values()
    )
    for cand in judged.values():
        assert healthy_phase(0.5, timers_in_effect({**STOCK, **cand.assignment}), 0.01)[1]
    lossless = build_space(WorkloadKind.KEEPALIVE, STOCK, facts=FACTS, path=NetworkPath())
    assert len({lossless.candidate(p).key for p in lossless.points()}) == 61  # nothing to judge, all kept
    # a host whose own sysctls probe soon makes the unset timers judgeable
    quick = {**STOCK, "net.ipv4.tcp_keepalive_time": 2, "net.ipv4.tcp_keepalive_intvl": 1}
    space = build_space(WorkloadKind.KEEPALIVE, quick, facts=FACTS, path=NetworkPath(loss=0.01))
    assert space.candidate(space.point_of({"SO_KEEPALIVE": True})).assignment == {"SO_KEEPALIVE": True}
