"""`--auto` maps a service's symptoms to knobs; kinds refuse knobs their probe cannot exercise (pure)."""

from __future__ import annotations

import pytest

from tuner.errors import InputError
from tuner.kinds import KINDS, spec
from tuner.observe.classify import Role, ServiceClass, ServiceShape, ServiceSignature, _symptom
from tuner.search.auto import auto_space
from tuner.search.space import space_knobs
from tuner.search.study import SearchConfig
from tuner.workload import NetworkPath, Workload, WorkloadKind


def _svc(kind: WorkloadKind, *symptoms: str) -> ServiceSignature:
    return ServiceSignature(
        key="tcp server :80",
        role=Role.SERVER,
        endpoint=":80",
        process=None,
        service_class=ServiceClass.REQUEST_RESPONSE,
        shape=ServiceShape(),
        path=NetworkPath(rtt=0.08),
        workload=Workload(kind),
        symptoms=[_symptom(s, "seen") for s in symptoms],
    )


def _space(kind: WorkloadKind, config: SearchConfig) -> list[str]:
    return space_knobs(kind, config.knobs, config.no_knobs)


def test_retransmissions_on_an_rr_service_search_congestion_control_not_the_rr_defaults():
    auto = auto_space(_svc(WorkloadKind.RR, "retransmissions"), SearchConfig())
    assert _space(WorkloadKind.RR, auto.config) == ["net.ipv4.tcp_congestion_control", "TCP_CONGESTION"]


def test_symptoms_are_searched_as_the_union_of_their_knobs():
    auto = auto_space(_svc(WorkloadKind.RR, "nagle-delayed-ack", "retransmissions"), SearchConfig())
    assert set(_space(WorkloadKind.RR, auto.config)) == {
        "TCP_NODELAY",
        "TCP_QUICKACK",
        "net.ipv4.tcp_congestion_control",
        "TCP_CONGESTION",
    }
    overflow = auto_space(_svc(WorkloadKind.BURST, "listen-overflow", "syn-drops"), SearchConfig())
    assert set(_space(WorkloadKind.BURST, overflow.config)) == {
        "backlog",
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_syncookies",
    }


def test_the_users_no_knob_still_applies():
    auto = auto_space(_svc(WorkloadKind.RR, "nagle-delayed-ack"), SearchConfig(no_knobs=("TCP_QUICKACK",)))
    assert _space(WorkloadKind.RR, auto.config) == ["TCP_NODELAY"]
    bulk = auto_space(_svc(WorkloadKind.BULK, "send-buffer-limited"), SearchConfig())
    assert bulk.left_out == {}
    assert set(_space(WorkloadKind.BULK, bulk.config)) == {
        "net.ipv4.tcp_wmem",
        "SO_SNDBUF",
        "net.core.wmem_max",
    }


def test_a_symptom_whose_knobs_the_probe_cannot_exercise_falls_back_to_the_kinds_space():
    auto = auto_space(_svc(WorkloadKind.BURST, "time-wait-pressure"), SearchConfig())
    assert set(auto.left_out) == {"net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range"}
    assert _space(WorkloadKind.BURST, auto.config) == list(spec(WorkloadKind.BURST).knobs)
    assert "net.core.somaxconn" not in spec(WorkloadKind.BURST).knobs  # it only caps the backlog


@pytest.mark.parametrize("kind, knob", [(k, n) for k, s in KINDS.items() for n in s.inert_knobs])
def test_knobs_a_probe_cannot_exercise_are_refused_and_not_offered(kind, knob):
    with pytest.raises(InputError, match="cannot move"):
        space_knobs(kind, add=[knob])
    assert knob not in spec(kind).knobs and knob not in spec(kind).optional_knobs
