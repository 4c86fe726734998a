from __future__ import annotations

import pickle

import pytest

from tuner.errors import KnobError
from tuner.knobs import Assignment, KernelFacts, Scope, check_assignment, get_knob

MIXED = {
    "TCP_NODELAY": 1,
    "backlog": 4096,
    "net.ipv4.tcp_rmem": [4096, 131072, 6291456],
    "net.core.somaxconn": 8192,
    "net.core.rmem_max": 8 << 20,
    "net.ipv4.tcp_slow_start_after_idle": False,
}


def test_construction_validates_names_and_values_into_canonical_form():
    a = Assignment(MIXED)
    assert a["TCP_NODELAY"] is True
    assert a["net.ipv4.tcp_rmem"] == (4096, 131072, 6291456)
    assert a == {**MIXED, "TCP_NODELAY": True, "net.ipv4.tcp_rmem": (4096, 131072, 6291456)}
    with pytest.raises(KnobError, match="not a knob tuner knows"):
        Assignment({"net.ipv4.tcp_rmemm": [1, 2, 3]})
    with pytest.raises(KnobError, match="expected true or false"):
        Assignment({"TCP_NODELAY": "on"})
    with pytest.raises(KnobError, match="must be <="):
        Assignment({"net.ipv4.tcp_rmem": [4096, 2048, 8192]})
    assert Assignment([("backlog", 16)]) == {"backlog": 16}


def test_checked_adds_the_coupled_constraints_and_the_kernel():
    Assignment({"SO_RCVBUF": 8 << 20, "net.core.rmem_max": 4 << 20})  # each value alone is fine
    with pytest.raises(KnobError, match="capped at net.core.rmem_max"):
        Assignment.checked({"SO_RCVBUF": 8 << 20, "net.core.rmem_max": 4 << 20})
    with pytest.raises(KnobError, match="tcp_rmem max is above"):
        Assignment({"net.ipv4.tcp_rmem": [4096, 87380, 8 << 20], "net.core.rmem_max": 4 << 20}).check()
    facts = KernelFacts(frozenset({"cubic", "reno"}), frozenset({"cubic", "reno"}))
    with pytest.raises(KnobError, match="not available on this kernel"):
        Assignment.checked({"TCP_CONGESTION": "bbr"}, facts)
    assert check_assignment({"backlog": 8, "net.core.somaxconn": 16}) == {
        "backlog": 8,
        "net.core.somaxconn": 16,
    }


def test_it_is_immutable_hashable_and_survives_pickling():
    a = Assignment(MIXED)
    with pytest.raises(TypeError):
        a["backlog"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        a._values = {}  # type: ignore[misc]
    assert not hasattr(a, "update") and not hasattr(a, "pop")
    b = Assignment(dict(reversed(list(MIXED.items()))))
    assert a == b and hash(a) == hash(b)
    assert len({a, b, Assignment()}) == 2
    assert pickle.loads(pickle.dumps(a)) == a
    assert Assignment(a) == a


def test_merging_puts_the_other_values_on_top():
    a = Assignment({"backlog": 8, "TCP_NODELAY": False}) | {"backlog": 16}
    assert a == {"backlog": 16, "TCP_NODELAY": False} and isinstance(a, Assignment)
    with pytest.raises(KnobError):
        Assignment() | {"backlog": -1}


def test_it_splits_by_scope_and_into_profile_sections():
    a = Assignment(MIXED)
    assert set(a.netns_sysctls) == {
        "net.ipv4.tcp_rmem",
        "net.core.somaxconn",
        "net.ipv4.tcp_slow_start_after_idle",
    }
    assert set(a.host_sysctls) == {"net.core.rmem_max"}
    assert set(a.sysctls) == set(a.netns_sysctls) | set(a.host_sysctls)
    assert set(a.socket_settings) == {"TCP_NODELAY", "backlog"}
    assert set(a.socket_options) == {"TCP_NODELAY"}
    assert a.sections() == (a.sysctls, a.socket_settings)
    for part, scope in ((a.netns_sysctls, Scope.NETNS), (a.host_sysctls, Scope.HOST)):
        assert all(get_knob(n).scope is scope for n in part)


def test_only_per_namespace_sysctls_pass_require_netns():
    a = Assignment(MIXED)
    assert a.netns_sysctls.require_netns() == a.netns_sysctls
    with pytest.raises(KnobError, match="host sysctl setting") as info:
        Assignment({"net.core.rmem_max": 1 << 20}).require_netns()
    assert "SO_RCVBUFFORCE" in (info.value.hint or "")
    with pytest.raises(KnobError, match="socket sockopt setting"):
        Assignment({"TCP_NODELAY": True}).require_netns()


def test_knob_predicates_agree_with_kind_and_scope():
    for name in MIXED:
        knob = get_knob(name)
        assert knob.per_netns == (knob.scope is Scope.NETNS)
        assert knob.host_only == (knob.scope is Scope.HOST)
        assert knob.set_by_application == (knob.scope is Scope.SOCKET)
        assert knob.section == ("socket" if knob.set_by_application else "sysctl")


def test_text_uses_the_one_value_formatter():
    a = Assignment({"TCP_NODELAY": True, "net.ipv4.tcp_rmem": [4096, 131072, 6291456], "SO_KEEPALIVE": 0})
    assert a.text() == "TCP_NODELAY=on, net.ipv4.tcp_rmem=4096 131072 6291456, SO_KEEPALIVE=off"
    assert a.to_json() == {
        "TCP_NODELAY": True,
        "net.ipv4.tcp_rmem": [4096, 131072, 6291456],
        "SO_KEEPALIVE": False,
    }
    assert Assignment({"net.core.somaxconn": 1, "TCP_NODELAY": True}).in_catalogue_order() == [
        "net.core.somaxconn",
        "TCP_NODELAY",
    ]
    assert Assignment({"backlog": 64}).int_value("backlog", 0) == 64
    assert Assignment().int_value("backlog", 128) == 128
