"""Classification on recorded snapshots (tests/observe/data, made by record_fixtures.py): pure, no root."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path as FsPath

from observe_scenarios import names, service

from tuner.kernel import Proto, SocketMemory, SocketRecord, TcpState, Timer
from tuner.knobs import CATALOGUE
from tuner.observe import SYMPTOM_KNOBS, Observation, Role, ServiceClass, Snapshot, Thresholds, signature
from tuner.workload import Direction, NetworkPath, Workload, WorkloadKind, WritePattern

DATA = FsPath(__file__).resolve().parent / "data"


def load(name: str) -> tuple[Snapshot, Snapshot, dict[int, int]]:
    doc = json.loads((DATA / f"{name}.json").read_text())
    peaks = {int(k): int(v) for k, v in doc["listener_peaks"].items()}
    return Snapshot.from_dict(doc["before"]), Snapshot.from_dict(doc["after"]), peaks


def observe_fixture(name: str, thresholds: Thresholds | None = None) -> Observation:
    before, after, peaks = load(name)
    return signature(before, after, listener_peaks=peaks, thresholds=thresholds)


def test_every_symptom_names_only_catalogue_knobs():
    for symptom, knobs in SYMPTOM_KNOBS.items():
        assert knobs, symptom
        assert set(knobs) <= set(CATALOGUE), (symptom, set(knobs) - set(CATALOGUE))


def test_a_snapshot_survives_a_json_round_trip():
    before, _, _ = load("nagle_rr")
    again = Snapshot.from_dict(json.loads(json.dumps(before.to_dict())))
    assert again == before
    assert any(s.tcp is not None and s.tcp.bytes_acked for s in again.sockets)


def test_a_tiny_backlog_under_a_connect_burst_is_churn_with_listen_overflows():
    obs = observe_fixture("listen_overflow")
    server = service(obs, "tcp server :5000")
    assert server.service_class is ServiceClass.CHURN
    assert "listen-overflow" in names(server)
    overflow = next(s for s in server.symptoms if s.name == "listen-overflow")
    assert "ListenOverflows" in overflow.evidence and "backlog of 2" in overflow.evidence
    assert overflow.knobs == ("backlog", "net.core.somaxconn")
    assert server.workload.kind is WorkloadKind.BURST
    client = service(obs, "tcp client -> 127.0.0.1:5000")
    assert client.service_class is ServiceClass.CHURN and client.shape.new_connections == 150


def test_split_small_writes_without_nodelay_are_nagle_bound():
    obs = observe_fixture("nagle_rr")
    client = service(obs, "tcp client -> 127.0.0.1:5000")
    assert client.service_class is ServiceClass.REQUEST_RESPONSE
    assert "nagle-delayed-ack" in names(client)
    assert "TCP_NODELAY" in client.knobs
    # about one exchange per delayed-ACK timeout (40 ms) per connection, 4 connections
    assert 10 < client.shape.exchange_rate / client.shape.connections < 40
    w = client.workload
    assert (w.kind, w.write_pattern, w.connections) == (WorkloadKind.RR, WritePattern.SPLIT, 4)
    assert (w.request_size, w.response_size) == (200, 100)


def test_the_same_exchange_with_nodelay_has_no_nagle_symptom():
    obs = observe_fixture("nodelay_rr")
    client = service(obs, "tcp client -> 127.0.0.1:5000")
    assert client.service_class is ServiceClass.REQUEST_RESPONSE
    assert names(client) == set()
    # hundreds of times the exchange rate of the Nagle-bound run
    nagle = service(observe_fixture("nagle_rr"), "tcp client -> 127.0.0.1:5000")
    assert client.shape.exchange_rate > 50 * nagle.shape.exchange_rate


def test_a_slow_udp_reader_is_a_udp_stream_with_receive_buffer_errors():
    obs = observe_fixture("udp_drops")
    reader = service(obs, "udp :9000")
    assert reader.role is Role.UDP and reader.service_class is ServiceClass.UDP_STREAM
    assert "udp-receive-buffer-errors" in names(reader)
    assert reader.shape.udp_drops == obs.counters["Udp.RcvbufErrors"] > 0
    w = reader.workload
    assert w.kind is WorkloadKind.UDP
    assert w.udp_rate > 5 * w.service_rate  # the sender offers far more than the reader takes


def test_idle_connections_without_keepalive_are_flagged_and_with_keepalive_are_not():
    without = observe_fixture("idle_no_keepalive")
    for key in ("tcp server :5000", "tcp client -> 127.0.0.1:5000"):
        svc = service(without, key)
        assert svc.service_class is ServiceClass.IDLE
        assert names(svc) == {"idle-without-keepalive"}
        assert svc.workload.kind is WorkloadKind.KEEPALIVE and svc.workload.idle_connections == 12
    with_ka = observe_fixture("idle_keepalive")
    for key in ("tcp server :5000", "tcp client -> 127.0.0.1:5000"):
        svc = service(with_ka, key)
        assert svc.service_class is ServiceClass.IDLE and names(svc) == set()
        assert svc.workload.kind is WorkloadKind.MEMORY


def test_how_many_idle_connections_count_as_many_is_a_threshold():
    obs = observe_fixture("idle_no_keepalive", Thresholds(idle_min_connections=13))
    assert all(not s.symptoms for s in obs.services)


def test_a_window_limited_bulk_sender_over_a_long_path_is_receive_window_limited():
    obs = observe_fixture("bulk_rwnd_limited")
    sender = service(obs, "tcp client -> 198.18.0.2:5000")
    assert sender.service_class is ServiceClass.BULK
    assert "receive-window-limited" in names(sender)
    assert set(sender.knobs) >= {"net.ipv4.tcp_rmem", "SO_RCVBUF"}
    assert 0.045 < sender.path.rtt < 0.060  # the sandbox path was 50 ms
    assert sender.path.rate_bps is None and sender.notes  # a window-limited flow cannot tell the path rate
    w = sender.workload
    assert (w.kind, w.direction, w.streams) == (WorkloadKind.BULK, Direction.UPLOAD, 1)


def test_an_autotuned_bulk_sender_is_not_window_limited_and_measures_the_path_rate():
    obs = observe_fixture("bulk_autotuned")
    sender = service(obs, "tcp client -> 198.18.0.2:5000")
    assert sender.service_class is ServiceClass.BULK
    assert not names(sender) & {"receive-window-limited", "send-buffer-limited"}
    assert sender.path.rate_bps is not None and 50e6 < sender.path.rate_bps < 150e6  # a 100 Mbit/s path
    windowed = service(observe_fixture("bulk_rwnd_limited"), "tcp client -> 198.18.0.2:5000")
    assert sender.shape.throughput_bps > 10 * windowed.shape.throughput_bps


def test_retransmissions_are_reported_with_their_share():
    # recorded with BBR overrunning the sandbox's bottleneck queue: Tcp.RetransSegs rose by ~6% of segments
    obs = observe_fixture("bulk_autotuned")
    sender = service(obs, "tcp client -> 198.18.0.2:5000")
    (retrans,) = [s for s in sender.symptoms if s.name == "retransmissions"]
    assert f"{obs.counters['Tcp.RetransSegs']} of" in retrans.evidence
    assert 0.01 < sender.path.loss < 0.2
    strict = signature(*load("bulk_autotuned")[:2], thresholds=Thresholds(retrans_share=0.5))
    assert "retransmissions" not in names(service(strict, sender.key))
    clean = service(observe_fixture("bulk_rwnd_limited"), sender.key)
    assert "retransmissions" not in names(clean) and clean.path.loss == 0


def test_short_client_connections_in_a_narrow_port_range_risk_port_exhaustion():
    obs = observe_fixture("port_exhaustion")
    client = service(obs, "tcp client -> 127.0.0.1:5000")
    assert client.service_class is ServiceClass.CHURN
    assert "ephemeral-port-exhaustion" in names(client)
    assert "40000-40099" in next(s.evidence for s in client.symptoms if s.name == "ephemeral-port-exhaustion")
    server = service(obs, "tcp server :5000")
    assert "ephemeral-port-exhaustion" not in names(server)  # a server's port is not ephemeral


def test_the_same_connections_in_the_default_port_range_are_no_exhaustion_risk():
    before, after, peaks = load("port_exhaustion")
    for snap in (before, after):
        snap.sysctls["net.ipv4.ip_local_port_range"] = (32768, 60999)
    obs = signature(before, after, listener_peaks=peaks)
    client = service(obs, "tcp client -> 127.0.0.1:5000")
    assert "ephemeral-port-exhaustion" not in names(client)


def test_every_service_carries_a_workload_and_path_a_search_can_use():
    for fixture in sorted(p.stem for p in DATA.glob("*.json")):
        for svc in observe_fixture(fixture).services:
            assert isinstance(svc.workload, Workload) and isinstance(svc.path, NetworkPath)
            assert Workload.from_dict(svc.workload.to_dict()) == svc.workload
            assert NetworkPath.from_dict(svc.path.to_dict()) == svc.path
            json.dumps(svc.to_dict())


def _udp(cookie: int, drops: int) -> SocketRecord:
    return SocketRecord(
        Proto.UDP,
        4,
        TcpState.CLOSE,
        "127.0.0.1",
        9999,
        "0.0.0.0",
        0,
        0,
        0,
        100 + cookie,
        0,
        cookie,
        Timer.NONE,
        0,
        0,
        None,
        SocketMemory(rmem_alloc=0, rcvbuf=4608, wmem_alloc=0, sndbuf=4608, wmem_queued=0, drops=drops),
    )


def test_udp_errors_on_sockets_that_are_gone_are_reported_for_the_namespace():
    before = Snapshot(10.0, 0.0, None, [_udp(1, 0)], {"Udp.RcvbufErrors": 5})
    after = Snapshot(11.0, 1.0, None, [], {"Udp.RcvbufErrors": 25})
    obs = signature(before, after)
    assert [s.name for s in obs.symptoms] == ["udp-receive-buffer-errors"]
    assert "+20" in obs.symptoms[0].evidence


def test_udp_drops_are_counted_per_socket_between_snapshots():
    before = Snapshot(10.0, 0.0, None, [_udp(1, 7)], {"Udp.RcvbufErrors": 7})
    after = Snapshot(12.0, 2.0, None, [_udp(1, 10)], {"Udp.RcvbufErrors": 10})
    (svc,) = signature(before, after).services
    assert svc.shape.udp_drops == 3 and names(svc) == {"udp-receive-buffer-errors"}
    quiet = signature(after, replace(after, taken_at=13.0))
    assert quiet.services[0].shape.udp_drops == 0 and not quiet.services[0].symptoms


def test_local_peers_get_no_path_estimate_at_all():
    # a loopback service's rate is the host's, and its retransmissions (SYNs and data re-sent after a
    # listen overflow) are the listener's: none of it is a path to emulate (the daemon re-queued searches
    # on "rate estimate appeared/vanished" and "loss 0% -> 11%" from such estimates). The recorded
    # loopback rr traffic, made to look rate-bound and 10% retransmitted:
    before, after, peaks = load("nodelay_rr")
    for sock in after.sockets:
        if sock.tcp is not None and sock.tcp.bytes_sent:
            sock.tcp.delivery_rate_app_limited = False
            sock.tcp.delivery_rate = max(sock.tcp.delivery_rate, 10_000_000)
            sock.tcp.bytes_retrans = sock.tcp.bytes_sent // 10
            sock.tcp.total_retrans = sock.tcp.data_segs_out // 10
    obs = signature(before, after, listener_peaks=peaks)
    local = [svc for svc in obs.services if any("local peers" in n for n in svc.notes)]
    assert local
    for svc in local:
        assert svc.path == NetworkPath(), (svc.key, svc.path)
