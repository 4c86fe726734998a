from __future__ import annotations

import os
import time

import pytest
from sandbox_helpers import alive, wait_until

from tuner.errors import KnobError, SandboxError
from tuner.netns import NETNS_DIR
from tuner.sandbox import Sandbox, Side
from tuner.sandbox.registry import REGISTRY_DIR
from tuner.workload import NetworkPath

pytestmark = pytest.mark.root

WAN = NetworkPath(rtt=0.05, rate_bps=50e6, loss=0.001)


def _namespace_facts() -> dict:
    import socket

    def read(name: str) -> str:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()

    with open("/proc/net/dev") as f:  # /proc/net follows the reader's namespace (/sys/class/net does not)
        links = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    with socket.socket() as ls:  # loopback works only if lo is up
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        socket.create_connection(ls.getsockname(), timeout=1).close()
    return {
        "ipv6_off": read("net.ipv6.conf.all.disable_ipv6"),
        "no_metrics_save": read("net.ipv4.tcp_no_metrics_save"),
        "links": links,
        "netns": os.readlink("/proc/self/ns/net"),
    }


def _tun_users(pids: list[int]) -> list[int]:
    users = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/net/tun":
                    users.append(pid)
            except OSError:
                continue
    return users


@pytest.mark.parametrize("path", [None, WAN], ids=["plain", "wan"])
def test_a_sandbox_leaves_no_namespace_link_tun_or_process_behind(path, host_snapshot):
    before = host_snapshot()
    with Sandbox(path) as sb:
        helpers = sb.helper_pids()
        facts = {side: sb.run(side, _namespace_facts) for side in Side}
        assert {sb.netns(Side.CLIENT), sb.netns(Side.SERVER)} <= set(os.listdir(NETNS_DIR))
        assert (REGISTRY_DIR / f"{sb.name}.json").exists()
        if path is not None:
            assert sb.backend in ("tun", "netem")
            if sb.backend == "tun":
                # one forwarder per direction, each holding both TUN devices
                assert len(helpers) == 2 and sorted(_tun_users(helpers)) == sorted(helpers * 2)
    for side in Side:
        assert facts[side]["ipv6_off"] == "1"
        assert facts[side]["no_metrics_save"] == "1"
        assert facts[side]["links"] == ["lo", "tnr0"]
    assert facts[Side.CLIENT]["netns"] != facts[Side.SERVER]["netns"]
    assert not any(alive(pid) for pid in helpers)
    assert host_snapshot() == before
    assert "tnr0" not in before["links"]


def _fail():
    raise ValueError("boom")


def test_an_exception_in_the_block_still_removes_everything(host_snapshot):
    before = host_snapshot()
    with pytest.raises(ValueError, match="boom"), Sandbox(WAN) as sb:
        helpers = sb.helper_pids()
        sb.spawn(Side.SERVER, time.sleep, 60)
        _fail()
    assert wait_until(lambda: not any(alive(p) for p in helpers), 2)
    assert host_snapshot() == before


def _udp_echo_once() -> bytes:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.0.2", 7007))
    s.settimeout(5)
    data, peer = s.recvfrom(100)
    s.sendto(data, peer)
    return data


def _udp_ask() -> bytes:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    for _ in range(20):
        s.sendto(b"hello", ("198.18.0.2", 7007))
        try:
            return s.recv(100)
        except TimeoutError:
            continue
    raise TimeoutError("no answer")


def test_a_wan_sandbox_is_created_used_and_destroyed_in_well_under_two_seconds():
    t0 = time.monotonic()
    with Sandbox(WAN) as sb:
        job = sb.spawn(Side.SERVER, _udp_echo_once)
        assert sb.run(Side.CLIENT, _udp_ask) == b"hello"
        assert job.result(5) == b"hello"
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"took {elapsed:.2f} s"


def test_names_are_unique_and_carry_the_owner_pid():
    with Sandbox() as a, Sandbox() as b:
        assert a.name != b.name
        for sb in (a, b):
            assert sb.name.startswith(f"tuner-{os.getpid()}-")
            assert sb.netns(Side.CLIENT).startswith(sb.name) and sb.netns(Side.SERVER).startswith(sb.name)
        assert a.address(Side.CLIENT) != a.address(Side.SERVER)


def test_a_host_wide_sysctl_is_refused_before_anything_is_created(host_snapshot):
    before = host_snapshot()
    with pytest.raises(KnobError) as info:
        Sandbox(client_sysctls={"net.core.rmem_max": 1 << 20})
    assert info.value.knob == "net.core.rmem_max" and "SO_RCVBUFFORCE" in info.value.hint
    with pytest.raises(KnobError):
        Sandbox(server_sysctls={"net.ipv4.no_such_knob": 1})
    assert host_snapshot() == before


def test_a_closed_sandbox_refuses_to_run_code():
    sb = Sandbox()
    with sb:
        pass
    with pytest.raises(SandboxError):
        sb.run(Side.CLIENT, os.getpid)
    with pytest.raises(SandboxError):
        sb.open()


def test_a_dead_delay_line_makes_the_path_unhealthy_and_says_why():
    import signal

    with Sandbox(WAN) as sb:
        assert sb.health().valid
        os.kill(sb.helper_pids()[0], signal.SIGKILL)
        assert wait_until(lambda: not sb.health().valid, 2)
        health = sb.health()
        assert "died" in health.reason and "signal 9" in health.reason
