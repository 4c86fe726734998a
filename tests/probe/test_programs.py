"""The workload programs on their own, on loopback, and the pieces they share (board, statistics)."""

from __future__ import annotations

import math
import os
import socket
import threading

import pytest

from tuner.kernel import sock_meminfo, tcp_info
from tuner.probe import bulk, rr, udp
from tuner.probe.base import connect_many, latency_metrics, percentile
from tuner.probe.board import Board, BoardTimeout
from tuner.probe.measurement import Measurement, Stat
from tuner.probe.sockopts import SocketOptions
from tuner.workload import Direction, NetworkPath, Workload, WorkloadKind, WritePattern

HOST = "127.0.0.1"
NO_OPTIONS = SocketOptions.from_assignment({})


def _in_thread(fn, *args):
    out: dict[str, object] = {}

    def run():
        try:
            out["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_the_board_is_shared_with_a_forked_child():
    board = Board("port", "stop")
    pid = os.fork()
    if pid == 0:
        board["port"] = 4242
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.wait("port", timeout=1.0) == 4242
    assert board["stop"] == 0.0


def test_waiting_on_the_board_ends_when_the_writer_is_gone_or_the_time_is_up():
    board = Board("ready")
    assert board.wait("ready", timeout=5.0, alive=lambda: False) == 0.0
    with pytest.raises(BoardTimeout):
        board.wait("ready", timeout=0.05)


def test_percentiles_interpolate_and_latencies_are_reported_in_ms():
    xs = [0.001 * i for i in range(1, 101)]
    assert percentile(xs, 50) == pytest.approx(0.0505)
    assert math.isnan(percentile([], 50))
    m = latency_metrics("latency", xs)
    assert m["latency_max_ms"] == pytest.approx(100.0) and m["latency_p99_ms"] == pytest.approx(99.01)


def test_a_measurement_with_notes_survives_a_round_trip():
    m = Measurement(
        Workload(WorkloadKind.KEEPALIVE),
        NetworkPath(rtt=0.05),
        {"net.ipv4.tcp_rmem": (1, 2, 3)},
        metrics={"detect_s": Stat(4.0, 3.5, 4.5, (3.5, 4.0, 4.5))},
        notes=("derived from settings",),
        valid=False,
        invalid_reason="sandbox: late",
    )
    assert Measurement.from_dict(m.to_dict()) == m


def test_rr_split_writes_reach_the_server_as_whole_requests():
    w = Workload(
        WorkloadKind.RR, request_size=300, response_size=5000, write_pattern=WritePattern.SPLIT, connections=3
    )
    opts = SocketOptions.from_assignment({"TCP_NODELAY": True})
    board = Board("port", "stop")
    t, out = _in_thread(rr.serve, w, opts, board, HOST)
    board.wait("port", timeout=5.0)
    report = rr.drive(w, opts, HOST, int(board["port"]), 0.05, 0.3)
    board["stop"] = 1
    t.join(5.0)
    assert "error" not in out
    assert len(report.latencies) > 100
    assert out["result"].connections == 3 and out["result"].transactions >= len(report.latencies)


def test_bulk_counts_what_the_receiver_read_and_the_sender_reports_tcp_info():
    w = Workload(WorkloadKind.BULK, streams=2, direction=Direction.DOWNLOAD)
    board = Board("port", "stop", "t_start", "t_end")
    t, out = _in_thread(bulk.serve, w, NO_OPTIONS, board, HOST)
    board.wait("port", timeout=5.0)
    client = bulk.drive(w, NO_OPTIONS, board, HOST, 0.05, 0.2)
    t.join(10.0)
    assert "error" not in out
    server = out["result"]
    assert not client.sending and server.sending
    assert client.bytes_in_window > 1_000_000
    assert server.busy_us > 0
    # what the sender counts as delivered in its window is what the receiver read in its own (no loss
    # on loopback, so no reassembly jump): same order of magnitude
    assert 0.5 < server.delivered_bytes / client.bytes_in_window < 2.0


def test_udp_counts_only_datagrams_sent_in_the_window():
    w = Workload(WorkloadKind.UDP, udp_rate=2000, udp_burst=10, service_rate=100000)
    board = Board("port", "stop", "t_start", "t_end", "sent_all", "steady", "done")
    t, out = _in_thread(udp.serve, w, NO_OPTIONS, board, HOST)
    board.wait("port", timeout=5.0)
    sender = udp.drive(w, NO_OPTIONS, board, HOST, 0.1, 0.3)
    t.join(5.0)
    reader = out["result"]
    assert sender.steady and sender.read_through
    assert sender.sent_in_window == 600  # 2000/s for 0.3 s (whole bursts), not the warm-up's
    assert reader.emptied  # a fast reader drains every burst
    # every datagram of the window is either read or counted by the socket's drop counter (a reader
    # thread stalled by a busy host may drop a few), and nothing outside the window is counted
    assert reader.window_read <= sender.sent_in_window <= reader.window_read + reader.drops


def test_connect_many_opens_waves_and_the_sockets_report_tcp_info_and_memory():
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(512)
    conns = connect_many(130, HOST, listener.getsockname()[1], NO_OPTIONS, wave=64)
    try:
        assert len(conns) == 130 and all(c.getblocking() for c in conns)
        conns[0].sendall(b"x" * 1000)
        assert tcp_info(conns[0]).bytes_sent >= 1000
        assert sock_meminfo(conns[0]).sndbuf > 0
    finally:
        for c in conns:
            c.close()
        listener.close()


def test_connect_many_fails_whole_when_nobody_listens():
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]  # bound, not listening: connects are refused
        with pytest.raises(OSError):
            connect_many(3, HOST, port, NO_OPTIONS)
