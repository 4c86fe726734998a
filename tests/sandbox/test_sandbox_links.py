"""Backend choice and settings (pure), and the netem backend as far as this kernel lets it run."""

from __future__ import annotations

import os
import socket
import statistics

import pytest
from sandbox_helpers import echo, ping_pong

from tuner.errors import SandboxError
from tuner.sandbox import DEFAULT_RATE_BPS, Sandbox, Side, netem_available, plan_link
from tuner.sandbox.doctor import kernel_config
from tuner.sandbox.links import MIN_QUEUE_PACKETS, default_queue, netem_settings
from tuner.workload import NetworkPath

IS_ROOT = os.geteuid() == 0


def test_a_plain_path_gets_a_bare_veth_pair_whatever_the_kernel():
    for netem in (True, False):
        assert plan_link(None, netem=netem).backend == "none"
        assert plan_link(NetworkPath(), netem=netem).backend == "none"


def test_a_wan_path_uses_netem_where_the_kernel_has_it_and_the_delay_line_otherwise():
    wan = NetworkPath(rtt=0.05, rate_bps=100e6, loss=0.01)
    kernel = plan_link(wan, netem=True)
    user = plan_link(wan, netem=False)
    assert (kernel.backend, user.backend) == ("netem", "tun")
    for plan in (kernel, user):
        assert plan.one_way_delay == pytest.approx(0.025) and plan.loss == 0.01 and plan.rate_bps == 100e6


def test_the_delay_line_always_has_a_rate_cap_and_a_queue_of_one_bdp_and_some_slack():
    plan = plan_link(NetworkPath(rtt=0.02), netem=False)
    assert plan.rate_bps == DEFAULT_RATE_BPS
    assert (
        plan.queue_packets == default_queue(DEFAULT_RATE_BPS, 0.02) == 367
    )  # 22 ms of 200 Mbit/s: one BDP (20 ms) + 2 ms
    assert plan_link(NetworkPath(rtt=0.02), netem=True).rate_bps is None  # netem may stay uncapped
    assert default_queue(10e6, 0.001) == MIN_QUEUE_PACKETS
    assert plan_link(NetworkPath(rtt=0.02, queue_packets=7), netem=False).queue_packets == 7


def test_jitter_is_kept_only_where_the_backend_can_do_it():
    path = NetworkPath(rtt=0.02, jitter=0.002)
    assert plan_link(path, netem=True).jitter == 0.002
    assert plan_link(path, netem=False).jitter == 0.0


def test_impossible_backend_requests_are_refused_with_a_hint():
    with pytest.raises(SandboxError, match="sch_netem") as info:
        plan_link(NetworkPath(rtt=0.01), netem=False, backend="netem")
    assert "tun" in info.value.hint
    with pytest.raises(SandboxError, match="cannot emulate"):
        plan_link(NetworkPath(rtt=0.01), netem=True, backend="none")
    with pytest.raises(SandboxError, match="unknown"):
        plan_link(None, netem=True, backend="dummynet")


def test_netem_gets_a_limit_that_holds_the_queue_and_everything_in_flight():
    plan = plan_link(NetworkPath(rtt=0.1, rate_bps=100e6, loss=0.02, queue_packets=50), netem=True)
    s = netem_settings(plan)
    assert s.delay_us == 50_000 and s.loss_percent == pytest.approx(2.0) and s.rate_bps == 100_000_000
    assert s.limit == 50 + 417  # queue + 100 Mbit/s * 50 ms in MTU packets
    uncapped = netem_settings(plan_link(NetworkPath(rtt=0.1), netem=True))
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
    with pytest.raises(SandboxError, match="netem") as info, Sandbox(NetworkPath(rtt=0.01), backend="netem"):
        pass
    assert info.value.hint
    assert host_snapshot() == before


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_the_netem_backend_delays_and_counts_where_the_kernel_has_netem():
    if not netem_available():
        pytest.skip("this kernel has no sch_netem (the delay line serves instead)")
    with Sandbox(NetworkPath(rtt=0.04, rate_bps=50e6), backend="netem") as sb:
        assert sb.backend == "netem"
        sb.spawn(Side.SERVER, echo)
        rtts = sb.run(Side.CLIENT, ping_pong, 10)
        health = sb.health()
    assert abs(statistics.median(rtts[2:]) - 0.04) < 0.003
    assert health.packets >= 20 and health.valid


def test_netem_settings_encode_to_the_kernels_units():
    from tuner.adapters.rtnl import netem_options

    plan = plan_link(NetworkPath(rtt=0.05, rate_bps=100e6, loss=0.01, queue_packets=100), netem=True)
    opts = netem_options(netem_settings(plan))
    t2us, us2t = (int(x, 16) for x in open("/proc/net/psched").read().split()[:2])
    assert opts["delay"] * us2t / t2us == pytest.approx(25_000, rel=1e-6)  # ticks -> microseconds (tc)
    assert opts["loss"] / (2**32 - 1) == pytest.approx(0.01, rel=1e-6)
    assert opts["rate_bytes_per_s"] == 12_500_000
    assert opts["limit"] == netem_settings(plan).limit


def _add_netem_here() -> None:
    from tuner.adapters.rtnl import NetemSettings, add_netem

    add_netem("tnr0", NetemSettings(delay_us=1000, loss_percent=0.0, rate_bps=None, limit=1000))


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_without_sch_netem_adding_netem_fails_with_enoent():
    if netem_available():
        pytest.skip("this kernel has netem")
    with Sandbox() as sb, pytest.raises(OSError) as info:
        sb.run(Side.CLIENT, _add_netem_here)
    assert info.value.errno == 2  # ENOENT: the qdisc kind is unknown


def _udp_burst(count: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(count):
        s.sendto(b"q" * 100, ("198.18.0.2", 9))


def _tbf_counters():
    from tuner.adapters.rtnl import qdisc_counters

    return qdisc_counters("tnr0", "tbf")


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_qdisc_counters_read_a_real_qdisc():
    import subprocess

    with Sandbox() as sb:
        subprocess.run(
            [
                "tc",
                "-n",
                sb.netns(Side.CLIENT),
                "qdisc",
                "add",
                "dev",
                "tnr0",
                "root",
                "tbf",
                "rate",
                "100mbit",
                "burst",
                "32k",
                "latency",
                "50ms",
            ],
            check=True,
        )
        sb.run(Side.CLIENT, _udp_burst, 50)
        counters = sb.run(Side.CLIENT, _tbf_counters)
    assert counters.packets >= 50 and counters.bytes >= 50 * 128 and counters.drops == 0


def test_netem_health_counts_from_the_qdiscs_since_the_last_reset():
    from tuner.sandbox.links import NetemLink, _NetemCounters

    now = {Side.CLIENT: _NetemCounters(10, 8, 8000, 2), Side.SERVER: _NetemCounters(5, 5, 300, 0)}
    link = NetemLink(plan_link(NetworkPath(rtt=0.02, loss=0.1), netem=True), {}, lambda side, fn: now[side])
    link.start()
    now = {Side.CLIENT: _NetemCounters(110, 98, 98000, 12), Side.SERVER: _NetemCounters(55, 55, 3300, 0)}
    health = link.health()
    assert (health.backend, health.packets, health.dropped_loss) == ("netem", 150, 10)
    assert (health.bytes_to_server, health.bytes_to_client) == (90000, 3000)
    assert health.valid and health.tun_drops == 0
