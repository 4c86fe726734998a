"""A run the path spoiled is measured once more; a run the candidate spoiled is not.

``_measure_once`` is replaced by a recording double (no sandbox): this checks the retry rule only.
"""

from __future__ import annotations

from dataclasses import replace

from tuner.kinds import DEFAULT_WORKLOADS
from tuner.probe import runner
from tuner.probe.measurement import Measurement
from tuner.workload import NetworkPath, WorkloadKind

BASE = Measurement(
    workload=DEFAULT_WORKLOADS[WorkloadKind.BULK],
    path=NetworkPath(rtt=0.2, rate_bps=1e9),
    assignment={},
    repeats=0,
    duration=1.0,
)
LATE = replace(
    BASE,
    valid=False,
    invalid_reason="sandbox: p99 packet lateness 1.5 ms > 1 ms",
    health={"valid": False, "late_p99_ms": 1.5},
)
GOOD = replace(BASE, valid=True, health={"valid": True, "late_p99_ms": 0.2})
LOADGEN = replace(
    BASE, valid=False, invalid_reason="load generator: the sender was busy 95%", health={"valid": True}
)


def _double(monkeypatch, results):
    calls = []

    def once(sb, base, options, repeats, duration, target=None):
        calls.append(1)
        return results[len(calls) - 1]

    monkeypatch.setattr(runner, "_measure_once", once)
    return calls


def test_a_run_the_path_spoiled_is_measured_again_and_says_so(monkeypatch):
    calls = _double(monkeypatch, [LATE, GOOD])
    m = runner._measure(None, BASE, None, 2, 1.0)
    assert len(calls) == 2 and m.valid
    assert any("measured again" in n and "lateness" in n for n in m.notes)


def test_only_one_retry_and_other_invalid_runs_are_not_retried(monkeypatch):
    calls = _double(monkeypatch, [LATE, LATE, GOOD])
    assert not runner._measure(None, BASE, None, 2, 1.0).valid and len(calls) == 2
    calls = _double(monkeypatch, [LOADGEN, GOOD])
    assert runner._measure(None, BASE, None, 2, 1.0) is LOADGEN and len(calls) == 1
    calls = _double(monkeypatch, [GOOD, LATE])
    assert runner._measure(None, BASE, None, 2, 1.0) is GOOD and len(calls) == 1
