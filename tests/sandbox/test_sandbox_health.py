"""The path's health names the hypervisor when it took the CPU a late delay line needed."""

from __future__ import annotations

from dataclasses import replace

from tuner.sandbox.health import STEAL_SHARE, PathHealth, judge, merge_health


def _health(late_p99_ms: float, steal_share: float) -> PathHealth:
    valid, reason = judge(0, late_p99_ms, steal_share=steal_share)
    return PathHealth(
        "tun",
        1000,
        0,
        0,
        0,
        10,
        late_p99_ms,
        late_p99_ms,
        0.1,
        valid,
        reason,
        elapsed=1.0,
        steal_share=steal_share,
    )


def test_a_late_line_on_a_machine_the_hypervisor_took_the_cpu_from_says_so():
    valid, reason = judge(0, 3.0, steal_share=0.25)
    assert not valid and reason is not None
    assert reason.startswith("sandbox: p99 packet lateness 3.00 ms > 1 ms")
    assert "the hypervisor took 25% of this machine's CPU meanwhile (steal)" in reason
    # without steal the old explanation stands alone; steal on a healthy path is no reason at all
    assert "hypervisor" not in (judge(0, 3.0, steal_share=STEAL_SHARE / 2)[1] or "")
    assert judge(0, 0.3, steal_share=0.5) == (True, None)


def test_a_kinds_own_limit_keeps_the_steal_in_its_verdict_and_a_merge_keeps_the_worst():
    late = _health(30.0, 0.1)
    judged = late.judged_with(20.0)
    assert not judged.valid and "hypervisor took 10%" in (judged.reason or "")
    assert merge_health([_health(0.2, 0.01), replace(_health(0.3, 0.3), valid=True)]).steal_share == 0.3
