"""burst: many short connections arriving at once at a listener that accepts at a given speed.

The server listens with the assignment's ``backlog`` (an application that does not choose gets
:data:`~tuner.probe.base.DEFAULT_BACKLOG` (128), capped by ``net.core.somaxconn`` as always) and accepts
``accept_rate`` connections per second, closing each at once. The client tries ``burst_connections``
connections with ``burst_threads`` attempts in flight at once: one thread issues non-blocking
``connect()`` calls (a wave of 256 leaves in a few milliseconds, which 256 Python threads cannot do)
and times each until the kernel reports it established, then resets it (no TIME_WAIT left to exhaust
ports). Each connect behaves as a blocking one would: the kernel retransmits a dropped SYN after 1 s,
then 2 s later. A connect not established after the connect timeout counts as failed, at its elapsed
time. One connection before the burst warms the path (ARP, routes) and is not counted.

Metrics per repeat: ``connect_p50/p99/max_ms``, ``connect_failed``, ``connect_rate`` (established
connections per second from the first attempt to the last success); the runner adds
``listen_overflows`` and ``listen_drops`` from the server namespace's counters.

Capacity on the development machine (2 cores shared with other work, plain veth sandbox,
``python3 bench/probes.py``): ~25k connects/s with 256 in flight against a listener that keeps up
(then the client process saturates a core); the first wave of 256 connects leaves within ~10 ms. A
repeat is invalid ("load generator: ...") when the first wave of connects took longer to start than
the server needs to accept it (then the arrivals were not a burst), or when the client process was
busy 90% or more of the time and started fewer connects per second than the server accepts (then the
client, not the listener, set the pace).
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass

from tuner.probe.base import RepeatEnv, Sample, drive_against_server, latency_metrics, open_listener
from tuner.probe.board import Board
from tuner.probe.cpu import SATURATED, CpuMeter
from tuner.probe.sockopts import SocketOptions
from tuner.workload import Workload

__all__ = [
    "COUNTER_METRICS",
    "ClientReport",
    "ServerReport",
    "connect_timeout",
    "drive",
    "run_repeat",
    "serve",
]

_RESET = struct.pack("ii", 1, 0)

# metrics the runner takes from kernel counter deltas of one repeat: name -> (side, counter)
COUNTER_METRICS = {
    "listen_overflows": ("server", "TcpExt.ListenOverflows"),
    "listen_drops": ("server", "TcpExt.ListenDrops"),
}


def connect_timeout(duration: float) -> float:
    """How long one connect may take before it counts as failed: three times the probe duration, at
    least 3 s (a SYN dropped by a full queue is retransmitted after 1 s, then 2 s later)."""
    return max(3.0, 3.0 * duration)


@dataclass(frozen=True)
class ServerReport:
    accepted: int
    backlog: int
    cpu_share: float


def serve(workload: Workload, options: SocketOptions, board: Board, host: str) -> ServerReport:
    """Accept ``accept_rate`` connections per second until ``board["stop"]``."""
    listener, backlog = open_listener(host, options)
    listener.settimeout(0.05)
    interval = 1.0 / workload.accept_rate if workload.accept_rate > 0 else 0.0
    accepted = 0
    due = 0.0
    meter = CpuMeter()
    meter.start()
    board["port"] = listener.getsockname()[1]
    while not board["stop"]:
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        done = time.monotonic()
        due = max(due, done - interval) + interval  # a slow acceptor: at most accept_rate per second
        options.accepted(conn, dead_peer=False)
        conn.close()
        accepted += 1
    listener.close()
    return ServerReport(accepted, backlog, meter.stop())


@dataclass(frozen=True)
class ClientReport:
    times: list[float]  # seconds per connect attempt (failed ones at their elapsed time)
    failed: int
    span: float  # first attempt to last success, seconds
    attempt_rate: float  # connect attempts started per second, first to last attempt
    first_wave_spread: float  # seconds to issue the first ``burst_threads`` connects
    cpu_share: float
    errors: dict[str, int]


def drive(workload: Workload, options: SocketOptions, host: str, port: int, timeout: float) -> ClientReport:
    """Keep ``burst_threads`` non-blocking connects in flight until ``burst_connections`` were tried."""
    target = (host, port)
    warm = socket.create_connection(target, timeout=timeout)  # path warm-up, not counted
    warm.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    warm.close()
    total = workload.burst_connections
    concurrency = max(1, min(workload.burst_threads, total))
    results: list[tuple[float, float, bool]] = []  # (start, elapsed, ok)
    errors: dict[str, int] = {}
    pending: dict[socket.socket, float] = {}
    order: deque[tuple[float, socket.socket]] = deque()  # by start time, for the timeouts
    first_wave: list[float] = []
    started = 0

    def finish(sock: socket.socket, now: float, err: int) -> None:
        t0 = pending.pop(sock)
        results.append((t0, now - t0, err == 0))
        if err:
            name = errno.errorcode.get(err, str(err))
            errors[name] = errors.get(name, 0) + 1
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)  # no TIME_WAIT left behind
        sel.unregister(sock)
        sock.close()

    meter = CpuMeter()
    meter.start()
    with selectors.DefaultSelector() as sel:
        try:
            while started < total or pending:
                while started < total and len(pending) < concurrency:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    options.client(sock, dead_peer=False)
                    sock.setblocking(False)
                    t0 = time.monotonic()
                    err = sock.connect_ex(target)
                    pending[sock] = t0
                    order.append((t0, sock))
                    sel.register(sock, selectors.EVENT_WRITE)
                    if len(first_wave) < concurrency:
                        first_wave.append(t0)
                    started += 1
                    if err not in (0, errno.EINPROGRESS):
                        finish(sock, time.monotonic(), err)
                while order and order[0][1] not in pending:
                    order.popleft()
                wait = max(0.0, order[0][0] + timeout - time.monotonic()) if order else 0.0
                for key, _ in sel.select(min(wait, 0.05)):
                    sock = key.fileobj  # type: ignore[assignment]
                    finish(sock, time.monotonic(), sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
                now = time.monotonic()
                while order and (order[0][1] not in pending or now - order[0][0] >= timeout):
                    _, sock = order.popleft()
                    if sock in pending:
                        finish(sock, now, errno.ETIMEDOUT)
        finally:
            for sock in list(pending):
                sock.close()
    share = meter.stop()
    oks = [(s, e) for s, e, ok in results if ok]
    first = min((s for s, _, _ in results), default=0.0)
    last_ok = max((s + e for s, e in oks), default=first)
    last_start = max((s for s, _, _ in results), default=first)
    attempt_rate = len(results) / (last_start - first) if last_start > first else float("inf")
    spread = first_wave[-1] - first_wave[0] if first_wave else 0.0
    return ClientReport(
        [e for _, e, _ in results],
        sum(1 for *_, ok in results if not ok),
        last_ok - first,
        attempt_rate,
        spread,
        share,
        errors,
    )


def run_repeat(env: RepeatEnv) -> Sample:
    w = env.workload
    client: ClientReport
    client, _ = drive_against_server(env, serve, drive, connect_timeout(env.duration))
    sample = Sample()
    sample.metrics.update(latency_metrics("connect", client.times))
    sample.metrics.pop("connect_p90_ms", None)
    sample.metrics["connect_failed"] = float(client.failed)
    ok = len(client.times) - client.failed
    sample.metrics["connect_rate"] = ok / client.span if client.span > 0 else 0.0
    if client.errors:
        sample.notes.append(
            "connect errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(client.errors.items()))
        )
    wave = min(w.burst_threads, w.burst_connections)
    if w.accept_rate > 0 and client.first_wave_spread > max(wave / w.accept_rate, 0.05):
        sample.bottleneck(
            "first wave",
            f"load generator: the first {wave} connects took "
            f"{client.first_wave_spread * 1e3:.0f} ms to start, longer than the server "
            f"needs to accept them ({wave / w.accept_rate * 1e3:.0f} ms)",
        )
    if client.cpu_share >= SATURATED and client.attempt_rate < w.accept_rate:
        sample.bottleneck(
            "client cpu",
            f"load generator: the burst client, busy {client.cpu_share:.0%} of a core, "
            f"started {client.attempt_rate:.0f} connects/s, fewer than the server accepts "
            f"({w.accept_rate:.0f}/s)",
        )
    return sample
