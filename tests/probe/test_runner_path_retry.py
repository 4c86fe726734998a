"""A repeat the path spoiled is measured again, up to the measurement's own number of repeats; the
settings' own effects (a busy load generator) are not retried.

``_repeat`` is replaced by a recording double (no sandbox): this checks the retry rule only; the
sandbox tests check the health each repeat is judged by.
"""

from __future__ import annotations

from tuner.kinds import DEFAULT_WORKLOADS
from tuner.probe import runner
from tuner.probe.base import Sample
from tuner.probe.measurement import Measurement
from tuner.sandbox.health import PathHealth, judge, merge_health
from tuner.workload import NetworkPath, WorkloadKind

BASE = Measurement(
    workload=DEFAULT_WORKLOADS[WorkloadKind.BULK],
    path=NetworkPath(rtt=0.2, rate_bps=1e9),
    assignment={},
    repeats=0,
    duration=1.0,
)


def _health(late_p99_ms: float, elapsed: float = 1.0, alive: bool = True) -> PathHealth:
    valid, reason = judge(0, late_p99_ms, alive)
    return PathHealth(
        "tun",
        1000,
        0,
        0,
        0,
        0,
        late_p99_ms,
        late_p99_ms,
        0.1,
        valid,
        reason,
        elapsed=elapsed,
        helpers_alive=alive,
    )


class _Box:
    backend = "tun"


def _double(monkeypatch, plan):
    """``plan``: per call, (p99 lateness ms, goodput, bottleneck or None[, delay line alive])."""
    calls = []

    def repeat(sb, record, env):
        late, goodput, bottleneck, *alive = plan[len(calls)]
        calls.append(late)
        sample = Sample(metrics={"goodput_mbps": goodput})
        if bottleneck:
            sample.bottlenecks["sender"] = bottleneck
        return runner.Repeat(sample, {"client": {}, "server": {}}, _health(late, alive=all(alive)))

    monkeypatch.setattr(runner, "_repeat", repeat)
    return calls


def test_a_repeat_the_path_spoiled_is_measured_again_and_left_out(monkeypatch):
    calls = _double(monkeypatch, [(0.2, 100.0, None), (3.0, 1.0, None), (0.3, 102.0, None)])
    m = runner._measure(_Box(), BASE, None, 2, 1.0)
    assert len(calls) == 3 and m.valid and m.repeats == 2
    assert sorted(m.metrics["goodput_mbps"].samples) == [100.0, 102.0]  # the spoiled 1.0 is not in it
    assert any("measured again" in n and "1 repeat" in n and "lateness" in n for n in m.notes)
    assert m.health["late_p99_ms"] == 0.3 and m.health["elapsed"] == 2.0  # only the kept repeats


def test_retries_stop_at_the_number_of_repeats_and_the_measurement_is_then_invalid(monkeypatch):
    calls = _double(monkeypatch, [(3.0, 1.0, None)] * 4 + [(0.2, 100.0, None)] * 2)
    m = runner._measure(_Box(), BASE, None, 2, 1.0)
    assert len(calls) == 4 and not m.valid and "lateness" in (m.invalid_reason or "")


def test_a_dead_delay_line_is_not_retried(monkeypatch):
    calls = _double(monkeypatch, [(0.0, 1.0, None, False), (0.2, 100.0, None), (0.2, 100.0, None)])
    m = runner._measure(_Box(), BASE, None, 2, 1.0)
    assert len(calls) == 2 and not m.valid and "died" in (m.invalid_reason or "")


def test_a_busy_load_generator_is_not_retried(monkeypatch):
    calls = _double(monkeypatch, [(0.2, 50.0, "the sender was busy 95%"), (0.2, 100.0, None)])
    m = runner._measure(_Box(), BASE, None, 2, 1.0)
    assert len(calls) == 2 and not m.valid and "busy" in (m.invalid_reason or "")


def test_a_load_generator_that_only_held_a_repeat_back_leaves_the_measurement_valid(monkeypatch):
    calls = _double(monkeypatch, [(0.2, 50.0, None), (0.2, 60.0, None)])
    real = runner._repeat

    def held(sb, record, env):
        r = real(sb, record, env)
        if len(calls) == 2:
            r.sample.held_back("client cpu", "load generator: the client was busy 92% of a core")
        return r

    monkeypatch.setattr(runner, "_repeat", held)
    m = runner._measure(_Box(), BASE, None, 2, 1.0)
    assert len(calls) == 2 and m.valid and m.repeats == 2  # not retried, not invalid
    assert m.held_back == "load generator: the client was busy 92% of a core (1 of 2 repeats)"
    assert Measurement.from_dict(m.to_dict()).held_back == m.held_back


def test_merged_health_adds_counts_and_keeps_the_worst_lateness():
    merged = merge_health([_health(0.2), _health(0.9, elapsed=2.0), _health(0.4)])
    assert merged.valid and merged.late_p99_ms == 0.9 and merged.elapsed == 4.0 and merged.packets == 3000
    assert not merge_health([_health(0.2), _health(2.0)]).valid


def test_a_kind_whose_metric_moves_in_seconds_tolerates_milliseconds_of_lateness():
    late = _health(3.0)
    assert not late.valid
    assert late.judged_with(20.0).valid
    assert not _health(30.0).judged_with(20.0).valid
    dead = PathHealth("tun", 1, 0, 0, 0, 0, 3.0, 3.0, 0.0, False, "died", helpers_alive=False)
    assert dead.judged_with(20.0) is dead
