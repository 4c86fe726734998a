"""The guard's decisions: what may be applied (tuner.daemon.guarded) and whether the signals after an
apply regressed (tuner.daemon.regression); pure."""

from __future__ import annotations

from dataclasses import replace

from tuner.daemon.config import parse_config
from tuner.daemon.guarded import select_knobs
from tuner.daemon.regression import (
    NAMESPACE,
    GuardWatch,
    Phase,
    Signals,
    combine,
    judge,
    retrans_share,
    signals,
)

G = parse_config(None).guard
SYSCTLS = {
    "net.core.somaxconn": 4096,
    "net.ipv4.tcp_rmem": (4096, 131072, 8388608),
    "net.core.rmem_max": 8388608,
    "net.ipv4.tcp_fin_timeout": 30,
    "net.ipv4.tcp_keepalive_time": 60,
}


def test_only_allow_listed_knobs_are_selected_and_every_other_one_says_why():
    sel = select_knobs(
        SYSCTLS,
        allow={
            "net.core.somaxconn",
            "net.ipv4.tcp_rmem",
            "net.core.rmem_max",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_keepalive_time",
        },
        manual={"net.ipv4.tcp_rmem"},
        admin_files={"net.ipv4.tcp_fin_timeout": "/etc/sysctl.d/10-x.conf:3 sets it to 60"},
        held={"net.ipv4.tcp_keepalive_time": "other-profile"},
        in_netns=True,
    )
    assert sel.apply == {"net.core.somaxconn": 4096}
    assert sel.skipped["net.ipv4.tcp_rmem"] == "manually managed"
    assert "administrator" in sel.skipped["net.ipv4.tcp_fin_timeout"]
    assert "other-profile" in sel.skipped["net.ipv4.tcp_keepalive_time"]
    assert "host-only" in sel.skipped["net.core.rmem_max"]


def test_nothing_is_selected_with_an_empty_allow_list():
    sel = select_knobs(SYSCTLS, allow=(), manual=(), admin_files={}, held={}, in_netns=False)
    assert sel.apply == {} and set(sel.skipped) == set(SYSCTLS)


def test_host_knobs_are_selected_on_the_host():
    sel = select_knobs(
        {"net.core.rmem_max": 8388608},
        allow={"net.core.rmem_max"},
        manual=(),
        admin_files={},
        held={},
        in_netns=False,
    )
    assert sel.apply == {"net.core.rmem_max": 8388608}


def base(**kw):
    d = dict(
        counter_rates={"TcpExt.ListenOverflows": 0.0},
        retrans_share=0.001,
        rtt={"svc": 0.010},
        symptoms=frozenset(),
        services=frozenset({"svc", "churner"}),
    )
    d.update(kw)
    return Signals(**d)


def test_same_signals_are_no_regression():
    assert judge(base(), base(), G) == []


def test_counter_rate_jump_is_a_regression_but_small_noise_is_not():
    assert judge(base(), base(counter_rates={"TcpExt.ListenOverflows": 0.5}), G) == []  # under the floor
    reasons = judge(base(), base(counter_rates={"TcpExt.ListenOverflows": 50.0}), G)
    assert reasons and "ListenOverflows" in reasons[0]
    # an already high rate must more than double
    high = base(counter_rates={"TcpExt.ListenOverflows": 100.0})
    assert judge(high, base(counter_rates={"TcpExt.ListenOverflows": 150.0}), G) == []
    assert judge(high, base(counter_rates={"TcpExt.ListenOverflows": 250.0}), G)


def test_new_symptom_on_a_known_service_is_a_regression_but_not_on_a_new_one():
    assert judge(base(), base(symptoms=frozenset({("svc", "listen-overflow")})), G)
    assert judge(base(), base(symptoms=frozenset({("newcomer", "listen-overflow")})), G) == []
    assert judge(base(), base(symptoms=frozenset({(NAMESPACE, "syn-drops")})), G)
    # a service without an rtt estimate (short connections) is known too
    assert judge(base(), base(symptoms=frozenset({("churner", "ephemeral-port-exhaustion")})), G)
    assert judge(base(), base(symptoms=frozenset({("svc", "x")})), replace(G, new_symptoms=False)) == []


def test_rtt_and_retransmission_increases():
    assert judge(base(), base(rtt={"svc": 0.011}), G) == []
    assert judge(base(), base(rtt={"svc": 0.030}), G)
    assert judge(base(), base(retrans_share=0.05), G)
    assert judge(base(retrans_share=None), base(retrans_share=0.05), G) == []


def test_signals_from_counter_deltas():
    s = signals(
        {"TcpExt.ListenOverflows": 100, "Tcp.OutSegs": 1000, "Tcp.RetransSegs": 10},
        10.0,
        ["TcpExt.ListenOverflows", "Udp.RcvbufErrors"],
        {"svc": 0.01},
        [("svc", "x")],
    )
    assert s.counter_rates == {"TcpExt.ListenOverflows": 10.0, "Udp.RcvbufErrors": 0.0}
    assert s.retrans_share == 0.01
    assert s.services == {"svc"}
    assert retrans_share({"Tcp.OutSegs": 10, "Tcp.RetransSegs": 5}) is None  # too few to tell


def test_combined_baseline_is_the_most_lenient():
    a = base(counter_rates={"TcpExt.ListenOverflows": 1.0}, rtt={"svc": 0.010})
    b = base(
        counter_rates={"TcpExt.ListenOverflows": 3.0}, rtt={"svc": 0.008}, symptoms=frozenset({("svc", "x")})
    )
    c = combine([a, b])
    assert c.counter_rates["TcpExt.ListenOverflows"] == 3.0 and c.rtt["svc"] == 0.010
    assert ("svc", "x") in c.symptoms
    assert combine([]) == Signals()


def test_watch_passes_at_its_deadline_after_a_sample_and_regresses_at_once():
    w = GuardWatch("id", "p", started=0.0, deadline=10.0, baseline=base())
    assert w.step(None, 11.0, G) == (Phase.WATCHING, [])  # no sample yet: keep watching
    assert w.step(base(), 5.0, G) == (Phase.WATCHING, [])
    assert w.step(base(), 11.0, G) == (Phase.PASSED, [])
    w2 = GuardWatch("id", "p", 0.0, 10.0, base())
    phase, reasons = w2.step(base(counter_rates={"TcpExt.ListenOverflows": 99.0}), 1.0, G)
    assert phase is Phase.REGRESSED and reasons
    assert GuardWatch.from_dict(w2.to_dict()) == w2
