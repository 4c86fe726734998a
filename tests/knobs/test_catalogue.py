from __future__ import annotations

import pytest

from tuner.errors import KnobError
from tuner.knobs import CATALOGUE, INT_MAX, KernelFacts, Scope, SysctlTree, check_assignment, get_knob


def test_catalogue_covers_every_required_knob():
    required = {
        "net.core.somaxconn",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_congestion_control",
        "net.ipv4.tcp_notsent_lowat",
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_fastopen",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.tcp_mtu_probing",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_no_metrics_save",
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.core.rmem_default",
        "net.core.wmem_default",
        "net.core.netdev_max_backlog",
        "net.ipv4.tcp_mem",
        "net.ipv4.udp_mem",
        "TCP_NODELAY",
        "SO_RCVBUF",
        "SO_SNDBUF",
        "backlog",
        "SO_KEEPALIVE",
        "TCP_KEEPIDLE",
        "TCP_KEEPINTVL",
        "TCP_KEEPCNT",
        "TCP_USER_TIMEOUT",
        "TCP_NOTSENT_LOWAT",
        "TCP_CONGESTION",
        "TCP_QUICKACK",
    }
    assert required <= set(CATALOGUE)


def test_host_only_sysctls_are_marked_host_scope():
    for name in ("net.core.rmem_max", "net.core.wmem_max", "net.core.netdev_max_backlog", "net.ipv4.tcp_mem"):
        assert get_knob(name).scope is Scope.HOST
    assert get_knob("net.ipv4.tcp_rmem").scope is Scope.NETNS
    assert get_knob("TCP_NODELAY").scope is Scope.SOCKET


def test_an_option_unset_in_favour_of_a_sysctl_names_a_catalogued_per_namespace_sysctl():
    inheriting = {k.name: k.unset for k in CATALOGUE.values() if isinstance(k.unset, str)}
    assert inheriting["TCP_KEEPIDLE"] == "net.ipv4.tcp_keepalive_time"
    for name, sysctl in inheriting.items():
        knob = get_knob(sysctl)
        assert knob.is_sysctl and knob.scope is Scope.NETNS, name  # read from the target's namespace


@pytest.mark.parametrize(
    "name",
    [
        "kernel.core_pattern",
        "net/../../kernel/core_pattern",
        "net.core..somaxconn",
        " net.core.somaxconn",
        "net.core.somaxconn ",
        "NET.CORE.SOMAXCONN",
        "net/core/somaxconn",
        "net.core.somaxconn\x00",
    ],
)
def test_unknown_or_disguised_names_are_not_knobs(name):
    with pytest.raises(KnobError):
        get_knob(name)


def test_triples_must_be_ordered():
    knob = get_knob("net.ipv4.tcp_rmem")
    assert knob.validate([4096, 131072, 6291456]) == (4096, 131072, 6291456)
    with pytest.raises(KnobError, match="default 131072 must be <= max 65536"):
        knob.validate([4096, 131072, 65536])


def test_values_above_int_max_are_refused():
    with pytest.raises(KnobError, match="out of range"):
        get_knob("net.core.somaxconn").validate(INT_MAX + 1)
    with pytest.raises(KnobError):
        get_knob("net.ipv4.tcp_wmem").validate([4096, 16384, INT_MAX + 1])


def test_flags_refuse_strings_and_numbers_other_than_0_1():
    knob = get_knob("TCP_NODELAY")
    assert knob.validate(True) is True and knob.validate(0) is False
    for bad in ("yes", 2, 1.0):
        with pytest.raises(KnobError):
            knob.validate(bad)


def test_integers_refuse_booleans():
    with pytest.raises(KnobError, match="expected an integer"):
        get_knob("net.core.somaxconn").validate(True)


def test_coupled_constraints_are_enforced():
    with pytest.raises(KnobError, match="capped at net.core.rmem_max"):
        check_assignment({"SO_RCVBUF": 8 << 20, "net.core.rmem_max": 4 << 20})
    with pytest.raises(KnobError, match="somaxconn"):
        check_assignment({"backlog": 4096, "net.core.somaxconn": 128})
    ok = check_assignment({"net.ipv4.tcp_rmem": [4096, 87380, 33554432], "net.core.rmem_max": 67108864})
    assert ok["net.ipv4.tcp_rmem"] == (4096, 87380, 33554432)


def test_congestion_control_must_be_offered_by_the_kernel(fake_proc_sys):
    facts = KernelFacts.read(fake_proc_sys)
    assert check_assignment({"net.ipv4.tcp_congestion_control": "reno"}, facts)
    with pytest.raises(KnobError, match="not available on this kernel"):
        check_assignment({"net.ipv4.tcp_congestion_control": "bbr"}, facts)


def test_sysctl_tree_reads_and_writes_a_fake_tree(fake_proc_sys):
    tree = SysctlTree(fake_proc_sys)
    knob = get_knob("net.ipv4.tcp_rmem")
    assert tree.read(knob) == (4096, 131072, 6291456)
    tree.write(knob, (4096, 262144, 16777216))
    assert tree.read(knob) == (4096, 262144, 16777216)
    assert (fake_proc_sys / "net/ipv4/tcp_rmem").read_text() == "4096\t262144\t16777216\n"


def test_a_knob_missing_from_the_kernel_reads_as_unavailable(fake_proc_sys):
    (fake_proc_sys / "net/ipv4/tcp_mtu_probing").unlink()
    assert SysctlTree(fake_proc_sys).read(get_knob("net.ipv4.tcp_mtu_probing")) is None


def test_every_sysctl_path_stays_under_the_root(fake_proc_sys):
    for knob in CATALOGUE.values():
        if knob.is_sysctl:
            path = knob.sysctl_path(fake_proc_sys).resolve()
            assert path.is_relative_to(fake_proc_sys.resolve())
