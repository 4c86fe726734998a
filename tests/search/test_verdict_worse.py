"""A verdict names every metric the recommended setting made significantly worse (search mechanics,
with the labelled probe double of search_doubles.py)."""

from __future__ import annotations

from search_doubles import STOCK, SyntheticMeasure

from tuner.search import SearchConfig, recommend
from tuner.search.recommend import worse_metrics
from tuner.workload import DEFAULT_WORKLOADS, Path, WorkloadKind


def _truth(a):
    # TCP_NODELAY fixes the Nagle trap, and (in this double) sends ten times the segments
    fast = bool(a.get("TCP_NODELAY"))
    return {"latency_p99_ms": 0.2 if fast else 44.0, "retransmits": 100.0 if fast else 10.0,
            "tps": 5000.0 if fast else 22.0}


def test_the_verdict_of_a_gain_names_the_metric_that_got_worse():
    measure = SyntheticMeasure(WorkloadKind.RR, _truth, repeats=6)
    config = SearchConfig(budget=4, sampler="grid", knobs=(), no_knobs=("TCP_QUICKACK", "SO_SNDBUF", "SO_RCVBUF"))
    rec = recommend(DEFAULT_WORKLOADS[WorkloadKind.RR], Path(), config, measure=measure, live=dict(STOCK))
    assert rec.assignment == {"TCP_NODELAY": True}
    assert "; worse: retransmits 10" in rec.verdict.text and "x worse (" in rec.verdict.text
    assert "tps" not in rec.verdict.text.split("worse:")[1]        # better metrics are not listed
    assert rec.profile.evidence["verdict"] == rec.verdict.text


def test_worse_metrics_lists_only_significant_losses():
    comparison = {"a": {"significant": True, "gain": 0.25, "baseline": 1.0, "recommended": 4.0},
                  "b": {"significant": False, "gain": 0.5, "baseline": 1.0, "recommended": 2.0},
                  "c": {"significant": True, "gain": 3.0, "baseline": 3.0, "recommended": 1.0}}
    assert worse_metrics(comparison) == ["a 4x worse (1 -> 4)"]
