"""Backend choice and settings (pure), and the netem backend as far as this kernel lets it run."""

from __future__ import annotations

import os
import socket
import statistics
import time

import pytest

from tuner.errors import SandboxError
from tuner.sandbox import DEFAULT_RATE_BPS, Sandbox, Side, netem_available, plan_link
from tuner.sandbox.doctor import kernel_config
from tuner.sandbox.links import MIN_QUEUE_PACKETS, default_queue, netem_settings
from tuner.workload import Path

IS_ROOT = os.geteuid() == 0


def test_a_plain_path_gets_a_bare_veth_pair_whatever_the_kernel():
    for netem in (True, False):
        assert plan_link(None, netem=netem).backend == "none"
        assert plan_link(Path(), netem=netem).backend == "none"


def test_a_wan_path_uses_netem_where_the_kernel_has_it_and_the_delay_line_otherwise():
    wan = Path(rtt=0.05, rate_bps=100e6, loss=0.01)
    kernel = plan_link(wan, netem=True)
    user = plan_link(wan, netem=False)
    assert (kernel.backend, user.backend) == ("netem", "tun")
    for plan in (kernel, user):
        assert plan.one_way_delay == pytest.approx(0.025) and plan.loss == 0.01 and plan.rate_bps == 100e6


def test_the_delay_line_always_has_a_rate_cap_and_a_queue_of_about_one_bdp():
    plan = plan_link(Path(rtt=0.02), netem=False)
    assert plan.rate_bps == DEFAULT_RATE_BPS
    assert plan.queue_packets == default_queue(DEFAULT_RATE_BPS, 0.02) == 334
    assert plan_link(Path(rtt=0.02), netem=True).rate_bps is None      # netem may stay uncapped
    assert default_queue(10e6, 0.001) == MIN_QUEUE_PACKETS
    assert plan_link(Path(rtt=0.02, queue_packets=7), netem=False).queue_packets == 7


def test_jitter_is_kept_only_where_the_backend_can_do_it():
    path = Path(rtt=0.02, jitter=0.002)
    assert plan_link(path, netem=True).jitter == 0.002
    assert plan_link(path, netem=False).jitter == 0.0


def test_impossible_backend_requests_are_refused_with_a_hint():
    with pytest.raises(SandboxError, match="sch_netem") as info:
        plan_link(Path(rtt=0.01), netem=False, backend="netem")
    assert "tun" in info.value.hint
    with pytest.raises(SandboxError, match="cannot emulate"):
        plan_link(Path(rtt=0.01), netem=True, backend="none")
    with pytest.raises(SandboxError, match="unknown"):
        plan_link(None, netem=True, backend="dummynet")


def test_netem_gets_a_limit_that_holds_the_queue_and_everything_in_flight():
    plan = plan_link(Path(rtt=0.1, rate_bps=100e6, loss=0.02, queue_packets=50), netem=True)
    s = netem_settings(plan)
    assert s.delay_us == 50_000 and s.loss_percent == pytest.approx(2.0) and s.rate_bps == 100_000_000
    assert s.limit == 50 + 417                      # queue + 100 Mbit/s * 50 ms in MTU packets
    uncapped = netem_settings(plan_link(Path(rtt=0.1), netem=True))
    assert uncapped.rate_bps is None and uncapped.limit > 10_000


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_netem_detection_agrees_with_the_kernel_config():
    config = kernel_config("CONFIG_NET_SCH_NETEM")
    if config is None:
        pytest.skip("no /proc/config.gz to compare with")
    if config == "m":
        pytest.skip("netem is a module here: loadable or not, the config cannot tell")
    assert netem_available() is (config == "y")


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_asking_for_netem_on_a_kernel_without_it_fails_cleanly(host_snapshot):
    if netem_available():
        pytest.skip("this kernel has netem")
    before = host_snapshot()
    with pytest.raises(SandboxError, match="netem") as info:
        with Sandbox(Path(rtt=0.01), backend="netem"):
            pass
    assert info.value.hint
    assert host_snapshot() == before


def _echo_server() -> None:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("198.18.0.2", 5401))
    ls.listen(1)
    conn, _ = ls.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(100):
        conn.sendall(data)


def _ping_pong() -> list[float]:
    deadline = time.monotonic() + 3
    while True:
        try:
            s = socket.create_connection(("198.18.0.2", 5401), timeout=5)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(10):
        t0 = time.monotonic()
        s.sendall(b"x" * 100)
        got = 0
        while got < 100:
            got += len(s.recv(100))
        out.append(time.monotonic() - t0)
    return out


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_the_netem_backend_delays_and_counts_where_the_kernel_has_netem():
    if not netem_available():
        pytest.skip("this kernel has no sch_netem (the delay line serves instead)")
    with Sandbox(Path(rtt=0.04, rate_bps=50e6), backend="netem") as sb:
        assert sb.backend == "netem"
        sb.spawn(Side.SERVER, _echo_server)
        rtts = sb.run(Side.CLIENT, _ping_pong)
        health = sb.health()
    assert abs(statistics.median(rtts[2:]) - 0.04) < 0.003
    assert health.packets >= 20 and health.valid
