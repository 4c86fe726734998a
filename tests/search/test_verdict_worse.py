"""A verdict names every metric the recommended setting made significantly worse (search mechanics,
with the labelled probe double of search_doubles.py)."""

from __future__ import annotations

from search_doubles import STOCK, SyntheticMeasure

from tuner.kinds import DEFAULT_WORKLOADS
from tuner.search import SearchConfig, recommend
from tuner.search.recommend import worse_metrics
from tuner.workload import NetworkPath, WorkloadKind


def _truth(a):
    # TCP_NODELAY fixes the Nagle trap, and (in this double) sends ten times the segments
    fast = bool(a.get("TCP_NODELAY"))
    return {
        "latency_p99_ms": 0.2 if fast else 44.0,
        "retransmits": 100.0 if fast else 10.0,
        "tps": 5000.0 if fast else 22.0,
    }


def test_the_verdict_of_a_gain_names_the_metric_that_got_worse():
    measure = SyntheticMeasure(WorkloadKind.RR, _truth, repeats=6)
    config = SearchConfig(
        budget=4, sampler="grid", knobs=(), no_knobs=("TCP_QUICKACK", "SO_SNDBUF", "SO_RCVBUF")
    )
    rec = recommend(
        DEFAULT_WORKLOADS[WorkloadKind.RR], NetworkPath(), config, measure=measure, live=dict(STOCK)
    )
    assert rec.assignment == {"TCP_NODELAY": True}
    assert "; worse: retransmits 10" in rec.verdict.text and "x worse (" in rec.verdict.text
    assert "tps" not in rec.verdict.text.split("worse:")[1]  # better metrics are not listed
    assert rec.profile.evidence["verdict"] == rec.verdict.text


def test_worse_metrics_lists_only_significant_losses():
    comparison = {
        "a": {"significant": True, "gain": 0.25, "baseline": 1.0, "recommended": 4.0},
        "b": {"significant": False, "gain": 0.5, "baseline": 1.0, "recommended": 2.0},
        "c": {"significant": True, "gain": 3.0, "baseline": 3.0, "recommended": 1.0},
    }
    assert worse_metrics(comparison) == ["a 4x worse (1 -> 4)"]


def test_a_diagnostic_metric_is_not_listed_as_worse():
    comparison = {
        "rwnd_limited_pct": {"significant": True, "gain": 0.0, "baseline": 0.0, "recommended": 100.0}
    }
    assert worse_metrics(comparison) == []


def test_a_metric_worse_from_zero_has_no_ratio_only_its_change():
    comparison = {"probes": {"significant": True, "gain": 0.0, "baseline": 0.0, "recommended": 896.0}}
    assert worse_metrics(comparison) == ["probes worse (0 -> 896)"]


def _keepalive_truth(a):
    # (double) keepalive off: not noticed within the 15 s window; 1 s idle, 1 s x 3: noticed at ~4 s
    on = bool(a.get("SO_KEEPALIVE"))
    return {
        "detect_s": 4.0 if on else 15.0,
        "detected_fraction": 1.0 if on else 0.0,
        "false_kills": 0.0,
        "keepalive_packets_per_conn_hour": 3600.0 if on else 0.0,
    }


def test_a_gain_over_a_baseline_measured_as_a_lower_bound_says_at_least():
    measure = SyntheticMeasure(WorkloadKind.KEEPALIVE, _keepalive_truth, repeats=6, noise=0.0)
    config = SearchConfig(
        budget=3,
        sampler="grid",
        no_knobs=("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"),
    )
    rec = recommend(
        DEFAULT_WORKLOADS[WorkloadKind.KEEPALIVE],
        NetworkPath(loss=0.01),
        config,
        measure=measure,
        # a host whose keepalive sysctls are those timers: with the stock 2-hour idle the probe could
        # not judge the setting's risk and the search would never measure it
        live={
            **STOCK,
            "net.ipv4.tcp_keepalive_time": 1,
            "net.ipv4.tcp_keepalive_intvl": 1,
            "net.ipv4.tcp_keepalive_probes": 3,
        },
    )
    assert rec.assignment == {"SO_KEEPALIVE": True}
    assert "at least" in rec.verdict.text and "lower bound" in rec.verdict.text
