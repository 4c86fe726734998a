"""How long the keepalive probe's phases last, planned from the timers the kernel reports, and which
settings a search can leave unmeasured because the probe could not judge them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tuner.probe.keepalive import (
    HEALTHY_PROBES,
    PHASE_CAP,
    WINDOW_MIN,
    Timers,
    healthy_phase,
    risk_unjudged,
    socket_timers,
    timers_in_effect,
    window,
)

STOCK_TIMERS = {
    "net.ipv4.tcp_keepalive_time": 7200,
    "net.ipv4.tcp_keepalive_intvl": 75,
    "net.ipv4.tcp_keepalive_probes": 9,
}


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


@pytest.mark.parametrize(
    "options",
    [{}, {"SO_KEEPALIVE": True}, {"SO_KEEPALIVE": True, "TCP_KEEPIDLE": 2, "TCP_KEEPCNT": 3}],
    ids=["nothing set", "keepalive on", "idle and count set"],
)
def test_the_timers_in_effect_are_those_the_kernel_reports_for_a_socket(options):
    # an option that is not set inherits this namespace's sysctl, as the kernel's getsockopt says
    sysctls = {name: int(Path("/proc/sys", *name.split(".")).read_text()) for name in STOCK_TIMERS}
    with socket.socket() as sock:
        if options.get("SO_KEEPALIVE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name in ("TCP_KEEPIDLE", "TCP_KEEPCNT"):
            if name in options:
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), options[name])
        assert timers_in_effect({**sysctls, **options}) == socket_timers(sock)


def test_timers_too_slow_for_the_healthy_phase_are_named_and_others_are_judged():
    on = {**STOCK_TIMERS, "SO_KEEPALIVE": True}
    knob, why = risk_unjudged({**on, "TCP_KEEPINTVL": 1}, 0.01)  # idle: the stock 2 hours
    assert knob == "TCP_KEEPIDLE" and "7200 s" in why and f"{PHASE_CAP:g} s" in why
    assert risk_unjudged({**on, "TCP_KEEPIDLE": 2}, 0.01)[0] == "TCP_KEEPINTVL"  # 75 s between probes
    assert risk_unjudged({**on, "TCP_KEEPIDLE": 3, "TCP_KEEPINTVL": 2}, 0.01) is None  # 9 probes: 30 s
    assert risk_unjudged(on, 0.0) is None  # no loss: nothing to judge, nothing left unjudged
    assert risk_unjudged(STOCK_TIMERS, 0.01) is None  # keepalive off: nothing can kill
