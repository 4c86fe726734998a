"""keepalive: idle connections whose peer silently disappears (every packet dropped on the path).

The server is the survivor: it accepts ``idle_connections`` connections and gets the assignment's
dead-peer options (``SO_KEEPALIVE``, ``TCP_KEEPIDLE``/``INTVL``/``CNT``, ``TCP_USER_TIMEOUT``) on them;
the client only holds its ends open. After a healthy idle phase of ``duration`` seconds the probe
partitions the path (``Sandbox.set_partitioned``) and the server waits for its sockets to fail
(``ETIMEDOUT`` from the keepalive timer), for at most :func:`window` seconds (10 x ``duration``).

Metrics per repeat: ``detect_s`` (median over the connections of the time from the partition to the
socket error; a connection not noticed within the window counts as the window, and
``detected_fraction`` says how many were noticed), ``keepalive_packets_per_conn_hour``: the keepalive
probes a connection costs per hour while its peer is alive, 3600 / the effective idle time, read back
from the survivor's socket with ``getsockopt(TCP_KEEPIDLE)`` (the kernel answers with the sysctl
``tcp_keepalive_time`` when the option is not set), 0 with keepalive off. It is derived from the
settings because a short probe cannot wait through hour-scale idle times; the probes actually sent
are in the counters (``TcpExt.TCPKeepAlive`` of the server namespace). Each probe also draws an ACK.

Capacity: not a throughput probe. Connections open 64 at a time; a repeat lasts the healthy phase plus
the detection time (at most the window).
"""

from __future__ import annotations

import errno
import selectors
import socket
import statistics
import time
from dataclasses import dataclass, field

from tuner.probe.base import (DEFAULT_BACKLOG, RepeatEnv, Sample, accept_many, connect_many, open_listener,
                              start_server, stop_server)
from tuner.probe.board import Board
from tuner.probe.sockopts import SocketOptions
from tuner.workload import Workload

__all__ = ["SurvivorReport", "serve", "hold", "run_repeat", "window"]


def window(duration: float) -> float:
    """How long the survivor waits for a dead peer to be noticed: ten probe durations."""
    return 10.0 * duration


@dataclass(frozen=True)
class SurvivorReport:
    detect_times: list[float]          # seconds from the partition to each socket's error
    undetected: int                    # connections still open when the window closed
    errors: dict[str, int] = field(default_factory=dict)   # errno name -> count
    early: int = 0                     # sockets that failed before the partition
    keepalive_on: bool = False
    keepidle_s: int = 0


def serve(workload: Workload, options: SocketOptions, board: Board, host: str, wait_s: float) -> SurvivorReport:
    listener, _ = open_listener(host, options, max(DEFAULT_BACKLOG, workload.idle_connections))
    board["port"] = listener.getsockname()[1]
    conns = accept_many(listener, max(workload.idle_connections, 1), options, dead_peer=True)
    listener.close()
    first = conns[0]
    keepalive_on = bool(first.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
    keepidle = first.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
    board["accepted"] = len(conns)
    detect: list[float] = []
    errors: dict[str, int] = {}
    early = 0
    with selectors.DefaultSelector() as sel:
        for conn in conns:
            sel.register(conn, selectors.EVENT_READ)
        open_count = len(conns)
        while open_count and not board["stop"]:
            t0 = board["partitioned_at"]
            if t0 and time.monotonic() > t0 + wait_s:
                break
            for key, _ in sel.select(0.02):
                conn = key.fileobj
                try:
                    data = conn.recv(4096)  # type: ignore[union-attr]
                    name = "EOF" if not data else None
                except OSError as exc:
                    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
                if name is None:
                    continue  # the client sent something: not expected, but harmless
                now = time.monotonic()
                t0 = board["partitioned_at"]
                if t0:
                    detect.append(now - t0)
                else:
                    early += 1
                errors[name] = errors.get(name, 0) + 1
                sel.unregister(conn)
                open_count -= 1
    for conn in conns:
        conn.close()
    return SurvivorReport(detect, open_count, errors, early, keepalive_on, keepidle)


def hold(workload: Workload, options: SocketOptions, board: Board, host: str) -> int:
    """The client: open the idle connections and keep them until ``board["stop"]``."""
    conns = connect_many(max(workload.idle_connections, 1), host, int(board["port"]), options, dead_peer=False)
    try:
        board["connected"] = len(conns)
        while not board["stop"]:
            time.sleep(0.02)
    finally:
        for conn in conns:
            conn.close()
    return len(conns)


def run_repeat(env: RepeatEnv) -> Sample:
    board = Board("port", "stop", "accepted", "connected", "partitioned_at")
    w = env.workload
    wait_s = window(env.duration)
    server = start_server(env, board, serve, w, env.options, board, env.server_host, wait_s)
    client = None
    partitioned = False
    try:
        client = start_server(env, board, hold, w, env.options, board, env.server_host, ready="connected",
                              role="client", side=env.client_side)
        board.wait("accepted", timeout=10.0, alive=server.alive)
        time.sleep(env.duration)             # the healthy idle phase
        env.sandbox.set_partitioned(True)
        partitioned = True
        board["partitioned_at"] = time.monotonic()
        report: SurvivorReport = stop_server(server, None, timeout=wait_s + 10.0)
    finally:
        if partitioned:
            env.sandbox.set_partitioned(False)
        board["stop"] = 1
        if client is not None:
            stop_server(client, board, role="client")
        if server.alive():
            stop_server(server, board)
    sample = Sample()
    n = len(report.detect_times) + report.undetected
    times = report.detect_times + [wait_s] * report.undetected
    sample.metrics["detect_s"] = statistics.median(times) if times else wait_s
    sample.metrics["detected_fraction"] = len(report.detect_times) / n if n else 0.0
    per_hour = 3600.0 / report.keepidle_s if report.keepalive_on and report.keepidle_s > 0 else 0.0
    sample.metrics["keepalive_packets_per_conn_hour"] = per_hour
    if report.undetected:
        sample.notes.append(f"{report.undetected} of {n} connections: dead peer not detected within the "
                            f"{wait_s:g} s window (detect_s counts them as {wait_s:g} s)")
    if report.errors:
        sample.notes.append("socket errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.errors.items())))
    if report.early:
        sample.bottleneck("early failures", f"probe: {report.early} connections failed before the partition")
    return sample
