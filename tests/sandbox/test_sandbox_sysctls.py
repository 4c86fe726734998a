from __future__ import annotations

import pytest

from tuner.errors import KnobError
from tuner.knobs import SysctlTree, get_knob
from tuner.sandbox import Sandbox, Side

pytestmark = pytest.mark.root


def _read(name: str):
    return SysctlTree().read(get_knob(name))


def test_a_server_sysctl_is_visible_in_the_server_namespace_only_and_the_host_is_untouched():
    host_before = _read("net.core.somaxconn")
    host_rmem = _read("net.ipv4.tcp_rmem")
    with Sandbox(
        server_sysctls={"net.core.somaxconn": 777, "net.ipv4.tcp_rmem": (4096, 65536, 1 << 20)}
    ) as sb:
        assert sb.run(Side.SERVER, _read, "net.core.somaxconn") == 777
        assert sb.run(Side.SERVER, _read, "net.ipv4.tcp_rmem") == (4096, 65536, 1 << 20)
        assert sb.run(Side.CLIENT, _read, "net.core.somaxconn") != 777
        assert sb.run(Side.CLIENT, _read, "net.ipv4.tcp_rmem") != (4096, 65536, 1 << 20)
        assert _read("net.core.somaxconn") == host_before
    assert _read("net.core.somaxconn") == host_before
    assert _read("net.ipv4.tcp_rmem") == host_rmem


def test_sysctls_applied_later_reach_only_the_side_asked_for():
    host_before = _read("net.ipv4.tcp_keepalive_time")
    with Sandbox(client_sysctls={"net.ipv4.tcp_keepalive_time": 30}) as sb:
        assert sb.run(Side.CLIENT, _read, "net.ipv4.tcp_keepalive_time") == 30
        sb.apply_sysctls(Side.SERVER, {"net.ipv4.tcp_keepalive_time": 45})
        assert sb.run(Side.SERVER, _read, "net.ipv4.tcp_keepalive_time") == 45
        assert sb.run(Side.CLIENT, _read, "net.ipv4.tcp_keepalive_time") == 30
    assert _read("net.ipv4.tcp_keepalive_time") == host_before


def test_a_value_the_kernel_refuses_comes_back_as_a_knob_error_with_a_hint():
    allowed = open("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read().split()
    available = open("/proc/sys/net/ipv4/tcp_available_congestion_control").read().split()
    refused = [a for a in available if a not in allowed]
    with Sandbox() as sb:
        if refused:
            with pytest.raises(KnobError) as info:
                sb.apply_sysctls(Side.CLIENT, {"net.ipv4.tcp_congestion_control": refused[0]})
            assert (
                info.value.knob == "net.ipv4.tcp_congestion_control" and "TCP_CONGESTION" in info.value.hint
            )
        with pytest.raises(KnobError) as info:
            sb.apply_sysctls(Side.CLIENT, {"net.core.wmem_max": 1 << 20})
        assert info.value.knob == "net.core.wmem_max"
