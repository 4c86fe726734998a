"""The kinds registry: every workload kind has one complete record, and the layers read it."""

from __future__ import annotations

import pytest

from tuner.kinds import DEFAULT_WORKLOADS, KINDS, KindSpec, spec
from tuner.knobs import get_knob
from tuner.probe.measurement import METRICS
from tuner.search.objective import default_objective
from tuner.workload import NetworkPath, WorkloadKind


def test_every_kind_has_one_record():
    assert set(KINDS) == set(WorkloadKind)
    for kind, record in KINDS.items():
        assert isinstance(record, KindSpec) and record.kind is kind and spec(kind) is record


@pytest.mark.parametrize("kind", list(WorkloadKind))
def test_a_record_holds_a_probe_a_default_workload_a_space_and_an_objective(kind):
    record = spec(kind)
    assert callable(record.probe)
    assert record.workload.kind is kind and DEFAULT_WORKLOADS[kind] == record.workload
    assert record.knobs
    assert default_objective(kind) == record.objective
    assert set(record.objective.metrics) <= set(METRICS)
    assert record.repeats >= 1 and record.duration > 0
    assert 0.0 <= record.default_loss < 1.0
    for metric, (side, _counter) in record.counter_metrics.items():
        assert metric in METRICS and side in ("client", "server")


@pytest.mark.parametrize("kind", list(WorkloadKind))
def test_a_records_knobs_and_levels_name_catalogue_knobs_and_inert_knobs_are_never_offered(kind):
    record = spec(kind)
    for name in [*record.knobs, *record.optional_knobs, *record.inert_knobs, *record.levels]:
        get_knob(name)  # raises on an unknown name
    assert set(record.levels) <= {*record.knobs, *record.optional_knobs}
    assert not set(record.inert_knobs) & {*record.knobs, *record.optional_knobs}
    assert not set(record.knobs) & set(record.optional_knobs)


def test_path_derived_levels_and_windows_follow_the_path():
    long_fat = NetworkPath(rtt=0.1, rate_bps=100e6)
    assert set(spec(WorkloadKind.BULK).path_level_map(long_fat)) == {
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "SO_RCVBUF",
        "SO_SNDBUF",
    }
    assert spec(WorkloadKind.BULK).path_level_map(NetworkPath()) == {}
    assert spec(WorkloadKind.RR).path_level_map(long_fat) == {}
    assert spec(WorkloadKind.BULK).probe_settings(long_fat) == (2, 0.8)
    assert spec(WorkloadKind.RR).probe_settings(NetworkPath(rtt=0.01)) == (3, 1.0)
    assert spec(WorkloadKind.UDP).probe_settings(long_fat) == (3, 0.5)


def test_a_record_whose_default_workload_is_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="default workload"):
        KindSpec(
            kind=WorkloadKind.RR,
            workload=DEFAULT_WORKLOADS[WorkloadKind.BULK],
            probe=spec(WorkloadKind.RR).probe,
            objective=spec(WorkloadKind.RR).objective,
            knobs=("TCP_NODELAY",),
        )
