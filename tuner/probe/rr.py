"""rr: TCP request/response (an echo service), the classic socket program.

The server is one process with an epoll loop (``selectors``): it reads ``request_size`` bytes and
answers ``response_size`` bytes, on as many connections as come. The client is one process driving
``connections`` closed loops (send a request, wait for the whole response, think, repeat) with the
same kind of loop. With ``write_pattern = split`` both request and response go out as two writes,
a header (the first half) and a body (the rest): the write-write-read pattern that meets Nagle's
algorithm and delayed ACKs.

Metrics per repeat: ``tps`` and ``latency_p50/p90/p99/max_ms`` of the transactions completed in the
measured window (connection setup and the warm-up before it are excluded).

Capacity on the development machine (2 cores shared with other work, plain veth sandbox, 100-byte
messages, TCP_NODELAY; ``python3 bench/probes.py``): one connection 15-40k transactions/s
(latency-bound, p50 ~0.05 ms); 4-16 connections 60-110k transactions/s, where the client process
saturates a core. A repeat whose client or server process was busy for 90% or more of the window is
marked held back ("load generator: ..."): beyond that it measures Python as much as the settings. In a
closed loop that only lengthens transactions, so such a measurement is a pessimistic bound: a search
may use it for a candidate (a setting fast enough to saturate the Python client, e.g. TCP_NODELAY on a
Nagle-bound service, is not thrown away), never as the baseline.
"""

from __future__ import annotations

import heapq
import selectors
import socket
import time
from dataclasses import dataclass
from typing import cast

from tuner.probe.base import (
    RepeatEnv,
    Sample,
    connect_many,
    drive_against_server,
    latency_metrics,
    open_listener,
)
from tuner.probe.board import Board
from tuner.probe.cpu import SATURATED, CpuMeter
from tuner.probe.sockopts import SocketOptions
from tuner.workload import Workload, WritePattern

__all__ = ["MIN_TRANSACTIONS", "ClientReport", "ServerReport", "drive", "run_repeat", "serve"]

# A repeat's p99 needs this many transactions to be a percentile rather than the maximum: the measured
# window runs on past ``duration`` until it has them, up to MAX_WINDOW_FACTOR x ``duration``.
MIN_TRANSACTIONS = 200
MAX_WINDOW_FACTOR = 4.0

_CHUNK = 1 << 16


def _parts(size: int, pattern: WritePattern) -> tuple[bytes, ...]:
    """The writes of one message: one, or a header (first half) and a body (the rest)."""
    if pattern is WritePattern.SPLIT and size >= 2:
        head = size // 2
        return (b"h" * head, b"b" * (size - head))
    return (b"m" * max(size, 1),)


def _send_parts(sock: socket.socket, parts: tuple[bytes, ...]) -> None:
    for part in parts:
        sock.sendall(part)


@dataclass(frozen=True)
class ServerReport:
    transactions: int
    connections: int
    cpu_share: float


def serve(workload: Workload, options: SocketOptions, board: Board, host: str) -> ServerReport:
    """The echo server: runs until ``board["stop"]``; announces its port in ``board["port"]``."""
    request, response = max(workload.request_size, 1), _parts(workload.response_size, workload.write_pattern)
    listener, _ = open_listener(host, options)
    listener.setblocking(False)
    pending: dict[socket.socket, int] = {}
    served = accepted = 0
    meter = CpuMeter()
    meter.start()
    with selectors.DefaultSelector() as sel:
        sel.register(listener, selectors.EVENT_READ)
        board["port"] = listener.getsockname()[1]
        while not board["stop"]:
            for key, _ in sel.select(0.05):
                if key.fileobj is listener:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(True)
                    options.accepted(conn)
                    sel.register(conn, selectors.EVENT_READ)
                    pending[conn] = 0
                    accepted += 1
                    continue
                sock = cast(socket.socket, key.fileobj)
                try:
                    data = sock.recv(_CHUNK)
                except ConnectionError:
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    pending.pop(sock, None)
                    continue
                options.after_read(sock)
                got = pending[sock] + len(data)
                try:
                    while got >= request:
                        got -= request
                        _send_parts(sock, response)
                        served += 1
                except ConnectionError:
                    sel.unregister(sock)
                    sock.close()
                    pending.pop(sock, None)
                    continue
                pending[sock] = got
    for sock in pending:
        sock.close()
    listener.close()
    return ServerReport(served, accepted, meter.stop())


@dataclass(frozen=True)
class ClientReport:
    latencies: list[float]  # seconds, transactions completed in the measured window
    window: float  # seconds actually measured
    cpu_share: float  # client CPU time / wall time over the window


def drive(
    workload: Workload, options: SocketOptions, host: str, port: int, warmup: float, duration: float
) -> ClientReport:
    """The client: ``connections`` closed loops; measures the window after ``warmup`` seconds."""
    request = _parts(workload.request_size, workload.write_pattern)
    response = max(workload.response_size, 1)
    conns = connect_many(max(workload.connections, 1), host, port, options)
    try:
        return _loop(conns, request, response, workload.think_time, options, warmup, duration)
    finally:
        for sock in conns:
            sock.close()


def _loop(
    conns: list[socket.socket],
    request: tuple[bytes, ...],
    response: int,
    think: float,
    options: SocketOptions,
    warmup: float,
    duration: float,
) -> ClientReport:
    sent_at: dict[socket.socket, float] = {}
    got: dict[socket.socket, int] = {c: 0 for c in conns}
    idle: list[tuple[float, int, socket.socket]] = []  # (when to send, tie-breaker, socket)
    latencies: list[float] = []
    meter = CpuMeter()
    now = time.monotonic()
    t_start = now + warmup
    t_end, t_cap = t_start + duration, t_start + duration * MAX_WINDOW_FACTOR
    measuring = False
    with selectors.DefaultSelector() as sel:
        for i, sock in enumerate(conns):
            sel.register(sock, selectors.EVENT_READ)
            heapq.heappush(idle, (now, i, sock))
        while True:
            now = time.monotonic()
            if not measuring and now >= t_start:
                measuring = True
                meter.start()
            if now >= t_end:
                if len(latencies) >= MIN_TRANSACTIONS or now >= t_cap:
                    break
                t_end = min(now + 0.05, t_cap)  # too few transactions for a p99 yet: run on
            while idle and idle[0][0] <= now:
                _, _, sock = heapq.heappop(idle)
                sent_at[sock] = time.monotonic()
                _send_parts(sock, request)
            timeout = max(0.0, min(idle[0][0] - now, t_end - now)) if idle else min(0.05, t_end - now)
            for key, _ in sel.select(timeout):
                sock = key.fileobj  # type: ignore[assignment]
                data = sock.recv(_CHUNK)
                if not data:
                    raise ConnectionResetError("the server closed a connection in the middle of the run")
                options.after_read(sock)
                got[sock] += len(data)
                if got[sock] >= response:
                    got[sock] -= response
                    done = time.monotonic()
                    if t_start <= done < t_end:
                        latencies.append(done - sent_at[sock])
                    heapq.heappush(idle, (done + think, id(sock), sock))
    share = meter.stop() if measuring else 0.0
    return ClientReport(latencies, max(t_end - t_start, duration), share)


def run_repeat(env: RepeatEnv) -> Sample:
    report: ClientReport
    server_report: ServerReport
    report, server_report = drive_against_server(env, serve, drive, env.warmup, env.duration)
    sample = Sample()
    sample.metrics["tps"] = len(report.latencies) / report.window
    sample.metrics.update(latency_metrics("latency", report.latencies))
    if not report.latencies:
        sample.bottleneck("no transactions", "probe: no transaction completed in the measured window")
    elif len(report.latencies) < MIN_TRANSACTIONS:
        sample.notes.append(
            f"{len(report.latencies)} transactions in {report.window:.1f} s (< {MIN_TRANSACTIONS}): "
            "the latency percentiles of this repeat are close to its maximum"
        )
    # a closed loop: a busy client or server lengthens every transaction, so the figures can only be worse
    # than the settings' own (a pessimistic bound, see Sample.held_back)
    if report.cpu_share >= SATURATED:
        sample.held_back(
            "client cpu", f"load generator: the rr client was busy {report.cpu_share:.0%} of a core"
        )
    if server_report.cpu_share >= SATURATED:
        sample.held_back(
            "server cpu", f"load generator: the rr server was busy {server_report.cpu_share:.0%} of a core"
        )
    return sample
