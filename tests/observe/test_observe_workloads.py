"""Real workloads in namespaces the tests create, observed end to end through ``observe()``."""

from __future__ import annotations

import observe_scenarios as sc
import pytest
from observe_scenarios import names, service

from tuner.knobs import SysctlTree, get_knob
from tuner.netns import run_in_netns
from tuner.observe import ServiceClass, observe
from tuner.workload import Direction, WorkloadKind, WritePattern

pytestmark = pytest.mark.root

SERVER = "tcp server :5000"
CLIENT = "tcp client -> 127.0.0.1:5000"


def test_a_listener_with_a_tiny_backlog_under_a_connect_burst_overflows(netns):
    with sc.listen_overflow(netns, backlog=2, connects=200, delay=0.2) as _:
        obs = observe(1.5, netns)
    assert obs.counters.get("TcpExt.ListenOverflows", 0) > 0
    server = service(obs, SERVER)
    assert server.service_class is ServiceClass.CHURN
    assert "listen-overflow" in names(server)
    assert server.process is not None and server.process.name.startswith("python")
    assert server.workload.kind is WorkloadKind.BURST
    assert service(obs, CLIENT).service_class is ServiceClass.CHURN


def test_a_bulk_sender_into_a_small_receive_buffer_over_a_long_path_is_window_limited():
    from tuner.sandbox import Sandbox, Side
    from tuner.workload import NetworkPath

    with Sandbox(NetworkPath(rtt=0.05, rate_bps=100e6)) as sb:
        host = sb.address(Side.SERVER)
        with (
            sc.Background(sb.netns(Side.SERVER), sc.bulk_receiver, host, 16 * 1024),
            sc.Background(sb.netns(Side.CLIENT), sc.bulk_sender, host),
        ):
            obs = observe(2.0, sb.netns(Side.CLIENT))
    sender = service(obs, f"tcp client -> {host}:5000")
    assert sender.service_class is ServiceClass.BULK
    assert "receive-window-limited" in names(sender)
    assert 0.045 < sender.path.rtt < 0.07
    # 32 KiB of window per 50 ms round trip is a few Mbit/s on a 100 Mbit/s path
    assert sender.shape.throughput_bps < 20e6
    assert (sender.workload.kind, sender.workload.direction) == (WorkloadKind.BULK, Direction.UPLOAD)


def test_split_small_writes_without_nodelay_are_nagle_bound(netns):
    with sc.nagle_rr(netns, nodelay=False):
        obs = observe(1.5, netns)
    client = service(obs, CLIENT)
    assert client.service_class is ServiceClass.REQUEST_RESPONSE
    assert "nagle-delayed-ack" in names(client)
    assert obs.counters.get("TcpExt.DelayedACKs", 0) > 0
    assert client.shape.exchange_rate / client.shape.connections < 50  # ~1 per 40 ms delayed ACK
    assert client.workload.write_pattern is WritePattern.SPLIT


def test_the_same_exchange_with_nodelay_is_fast_and_has_no_nagle_symptom(netns):
    with sc.nagle_rr(netns, nodelay=True):
        obs = observe(1.0, netns)
    client = service(obs, CLIENT)
    assert client.service_class is ServiceClass.REQUEST_RESPONSE
    assert "nagle-delayed-ack" not in names(client)
    assert client.shape.exchange_rate / client.shape.connections > 200  # vs ~22 when Nagle-bound


def test_a_udp_reader_that_cannot_keep_up_drops_at_its_socket(netns):
    with sc.udp_drops(netns, rate=5000.0):
        obs = observe(1.0, netns)
    reader = service(obs, "udp :9000")
    assert reader.service_class is ServiceClass.UDP_STREAM
    assert "udp-receive-buffer-errors" in names(reader)
    assert reader.shape.udp_drops > 0
    # the socket's drop count and the namespace counter are read a moment apart in each snapshot: at
    # ~5000 drops/s they may differ by the drops of those few milliseconds
    assert reader.shape.udp_drops <= 1.05 * obs.counters["Udp.RcvbufErrors"] + 50
    assert reader.workload.kind is WorkloadKind.UDP


@pytest.mark.parametrize(
    "keepalive, symptoms, kind",
    [
        (False, {"idle-without-keepalive"}, WorkloadKind.KEEPALIVE),
        (True, set(), WorkloadKind.MEMORY),
    ],
    ids=["keepalive-off-is-flagged", "keepalive-on-is-not"],
)
def test_idle_connections_are_flagged_only_without_keepalive(netns, keepalive, symptoms, kind):
    with sc.idle_connections(netns, count=12, keepalive=keepalive):
        obs = observe(1.0, netns)
    for key in (SERVER, CLIENT):
        svc = service(obs, key)
        assert svc.service_class is ServiceClass.IDLE
        assert names(svc) == symptoms
        assert svc.workload.kind is kind


def _narrow_port_range() -> None:
    SysctlTree().write(get_knob("net.ipv4.ip_local_port_range"), (40000, 40099))


def test_short_connections_in_a_narrow_port_range_risk_port_exhaustion(netns):
    run_in_netns(netns, _narrow_port_range)
    with sc.short_connections(netns, count=70, delay=0.2):
        obs = observe(1.2, netns)
    client = service(obs, CLIENT)
    assert client.shape.time_wait >= 60
    assert "ephemeral-port-exhaustion" in names(client)
