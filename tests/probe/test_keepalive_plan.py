"""How long the keepalive probe's phases last, planned from the timers the kernel reports (pure)."""

from __future__ import annotations

from tuner.probe.keepalive import HEALTHY_PROBES, PHASE_CAP, WINDOW_MIN, Timers, healthy_phase, window


def test_the_healthy_phase_covers_a_few_probes_and_the_give_up_after_a_lost_one():
    eager = Timers(True, idle_s=1, intvl_s=1, count=1)
    assert healthy_phase(0.5, eager, 0.01) == (1 + 1 + HEALTHY_PROBES * 1, True)
    assert healthy_phase(0.5, eager, 0.0) == (0.5, True)  # no loss: nothing to give up on
    assert healthy_phase(0.5, Timers(False), 0.01) == (0.5, True)  # no keepalive: nothing that kills


def test_timers_that_give_up_later_than_the_probe_can_wait_leave_the_risk_unmeasured():
    # one lost probe with a user timeout kills at the next keepalive timer, 75 s later by default
    late = Timers(True, idle_s=1, intvl_s=75, count=9, user_timeout_ms=1000)
    seconds, seen = healthy_phase(0.5, late, 0.01)
    assert not seen and seconds == 0.5
    assert late.detection_s > PHASE_CAP


def test_the_dead_peer_window_is_the_same_for_every_setting():
    assert window(0.5) == WINDOW_MIN
    assert window(3.0) == max(30.0, WINDOW_MIN)


def test_with_a_user_timeout_the_timer_gives_up_at_its_first_firing_past_it_whatever_the_count():
    assert Timers(True, idle_s=4, intvl_s=2, count=9, user_timeout_ms=1000).detection_s == 4 + 2
    assert Timers(True, idle_s=1, intvl_s=1, count=9, user_timeout_ms=3000).detection_s == 1 + 2
    assert Timers(True, idle_s=1, intvl_s=1, count=9).detection_s == 1 + 9
