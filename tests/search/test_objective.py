"""Objectives: defaults per kind, --objective parsing, keepalive and memory scores, gains."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from tuner.errors import InputError
from tuner.kinds import DEFAULT_WORKLOADS
from tuner.probe.measurement import Measurement, summarize
from tuner.scoring import (
    Goal,
    KeepaliveObjective,
    MemoryObjective,
    MetricObjective,
    Score,
    UdpObjective,
    gain,
    udp_latency_bound_ms,
)
from tuner.search.objective import default_objective, parse_objective
from tuner.workload import NetworkPath, WorkloadKind


def _m(kind, **metrics):
    return Measurement(
        workload=DEFAULT_WORKLOADS[kind],
        path=NetworkPath(),
        assignment={},
        metrics={k: summarize(v if isinstance(v, list) else [v]) for k, v in metrics.items()},
    )


def test_each_kind_has_a_default_objective_with_the_right_direction():
    assert default_objective(WorkloadKind.RR) == MetricObjective("latency_p99_ms", Goal.MIN)
    assert default_objective(WorkloadKind.BULK) == MetricObjective("goodput_mbps", Goal.MAX)
    assert default_objective(WorkloadKind.BURST) == MetricObjective("connect_p99_ms", Goal.MIN)
    assert isinstance(default_objective(WorkloadKind.UDP), UdpObjective)
    assert isinstance(default_objective(WorkloadKind.KEEPALIVE), KeepaliveObjective)
    assert isinstance(default_objective(WorkloadKind.MEMORY), MemoryObjective)


def test_objective_flag_takes_a_metric_and_an_optional_direction():
    assert parse_objective("tps", WorkloadKind.RR) == MetricObjective("tps", Goal.MAX)
    assert parse_objective("latency_p50_ms:min", WorkloadKind.RR) == MetricObjective(
        "latency_p50_ms", Goal.MIN
    )
    with pytest.raises(InputError, match="unknown metric"):
        parse_objective("latency", WorkloadKind.RR)
    with pytest.raises(InputError, match="neither min nor max"):
        parse_objective("tps:up", WorkloadKind.RR)


def test_a_loss_is_smaller_for_better_scores_in_both_directions():
    lo = Score(1.0, (1.0,), Goal.MIN)
    hi = Score(2.0, (2.0,), Goal.MIN)
    assert lo.better_than(hi)
    assert Score(2.0, (2.0,), Goal.MAX).better_than(Score(1.0, (1.0,), Goal.MAX))
    assert gain(44.0, 0.2, Goal.MIN) == pytest.approx(220)
    assert gain(10.0, 20.0, Goal.MAX) == 2.0
    assert Score(1.0, (), Goal.MIN, feasible=False).loss == math.inf


def test_keepalive_scores_measured_detection_a_lower_bound_as_such_and_refuses_false_kills():
    obj = KeepaliveObjective()

    def ka(detect, fraction, kills, per_hour):
        m = _m(WorkloadKind.KEEPALIVE, detect_s=detect, detected_fraction=fraction, false_kills=kills)
        return replace(m, computed={"keepalive_packets_per_conn_hour": per_hour})

    detected = ka([3.0, 3.2], [1.0, 1.0], [0.0, 0.0], 1800.0)
    missed = ka([5.0, 5.0], [0.0, 0.0], [0.0, 0.0], 0.0)
    killer = ka([1.1, 1.2], [1.0, 1.0], [0.0, 3.0], 3600.0)
    assert obj.score(detected).value == pytest.approx(3.1 + 1.8)
    lower = obj.score(missed)
    assert lower.value == pytest.approx(5.0) and lower.feasible and "lower bound" in lower.reason  # no model
    assert not obj.score(killer).feasible and "killed" in obj.score(killer).reason
    assert obj.score(killer).violation == pytest.approx(1.5)  # healthy connections killed per repeat
    assert obj.score(detected).better_than(lower)
    assert not obj.score(_m(WorkloadKind.KEEPALIVE, detect_s=[1.0])).feasible  # risk not measured: no claim


def test_memory_settings_below_the_throughput_floor_are_infeasible():
    obj = MemoryObjective()
    base = _m(WorkloadKind.MEMORY, bytes_per_conn=700000.0, goodput_mbps=16000.0)
    small_slow = _m(WorkloadKind.MEMORY, bytes_per_conn=110000.0, goodput_mbps=12000.0)
    small_fast = _m(WorkloadKind.MEMORY, bytes_per_conn=300000.0, goodput_mbps=15500.0)
    assert not obj.score(small_slow, base).feasible and "floor" in obj.score(small_slow, base).reason
    assert obj.score(small_fast, base).feasible and obj.score(small_fast, base).value == 300000.0


def test_udp_refuses_a_buffer_that_buys_delivery_with_a_standing_queue():
    # default workload: bursts of 500 into a reader of 20k/s; two bursts take 50 ms to serve
    obj = UdpObjective()
    base = _m(WorkloadKind.UDP, delivered_fraction=[0.25, 0.26, 0.24], reader_latency_ms=[2.0, 2.1, 2.2])
    absorbs = _m(WorkloadKind.UDP, delivered_fraction=[1.0, 1.0, 1.0], reader_latency_ms=[12.0, 12.5, 13.0])
    queues = _m(
        WorkloadKind.UDP, delivered_fraction=[0.42, 0.41, 0.42], reader_latency_ms=[2400.0, 2500.0, 2450.0]
    )
    assert udp_latency_bound_ms(base) == pytest.approx(2e3 * 500 / 20000 + 10.0)
    assert obj.score(absorbs, base).feasible and obj.score(absorbs, base).value == 1.0
    refused = obj.score(queues, base)
    assert not refused.feasible and "standing queue" in refused.reason
    assert obj.score(absorbs, base).better_than(refused)
    # a baseline already above the bound sets the bound: a candidate may not queue more than it
    slow = _m(WorkloadKind.UDP, delivered_fraction=[0.4], reader_latency_ms=[3000.0])
    assert obj.score(queues, slow).feasible
    assert not obj.score(
        _m(WorkloadKind.UDP, delivered_fraction=[0.4]), base
    ).feasible  # no latency: no claim


def test_udp_makes_no_buffer_claim_under_a_sustained_overload():
    from dataclasses import replace as _replace

    from tuner.probe.udp import overload_note

    note = (overload_note(20000, 50000),)
    base = _replace(_m(WorkloadKind.UDP, delivered_fraction=[0.2], reader_latency_ms=[4.0]), notes=note)
    fuller = _replace(_m(WorkloadKind.UDP, delivered_fraction=[0.4], reader_latency_ms=[20.0]), notes=note)
    score = UdpObjective().score(fuller, base)
    assert not score.feasible and "buffers cannot fix this" in score.reason
    assert UdpObjective().score(base).feasible  # the baseline itself is scored
    slow_base = _m(WorkloadKind.UDP, delivered_fraction=[0.5], reader_latency_ms=[900.0])
    assert UdpObjective().score(slow_base).feasible  # even above the bound: it is what runs
