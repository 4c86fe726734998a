"""bulk: one or more long TCP streams in a chosen direction (upload: client -> server).

Both ends run the same endpoint code: one thread per stream (``sendall`` of 256 KiB chunks, or
``recv_into`` counting bytes), and a monitor that takes snapshots at the start and the end of the
measured window. The client announces that window on the shared board once its streams are connected,
``warmup`` seconds ahead, so slow start and receive-buffer autotuning are excluded.

Metrics per repeat: ``goodput_mbps`` (payload the peer received in the window, counted at the sender:
tcpi_delivered x MSS; the receiver's reads where tcp_info lacks it), and from the sender's
``tcp_info`` over the same window: ``retransmits`` (segments), ``rwnd_limited_pct`` and
``sndbuf_limited_pct`` (share of the sender's busy time it was held back by the receive window or by
its own send buffer).

Capacity on the development machine (2 cores shared with other work, ``python3 bench/probes.py``):
one stream over a plain veth pair carries 18-23 Gbit/s with the sender's core saturated; any capped
path the sandbox emulates (up to a few hundred Mbit/s) is far below that. A repeat where an endpoint
process was busy 90% or more of the window is marked invalid ("load generator: ...").
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from dataclasses import dataclass

from tuner.kernel import TcpInfo, tcp_info
from tuner.probe.base import (
    CONNECT_TIMEOUT,
    RepeatEnv,
    Sample,
    accept_many,
    connect_many,
    open_listener,
    start_server,
    stop_server,
)
from tuner.probe.board import Board
from tuner.probe.cpu import SATURATED, CpuMeter
from tuner.probe.sockopts import SocketOptions
from tuner.workload import Direction, Workload

__all__ = ["EndpointReport", "drive", "run_repeat", "serve", "warmup_for"]

_CHUNK = 256 * 1024
_POLL = 0.2  # seconds a stream thread blocks before it looks at the stop flag


def warmup_for(rtt: float, base: float, rate_bps: float | None = None) -> float:
    """Slow start and receive-buffer autotuning take several round trips: at least 10 RTTs, and on a
    path with a rate enough of them for the window to grow to its bandwidth-delay product (about x1.5
    per RTT with delayed ACKs, from 10 segments) plus four more (at 1 Gbit/s x 200 ms: 4.5 s)."""
    rtts = 10.0
    if rate_bps:
        packets = rate_bps * rtt / 8 / 1448
        rtts = max(rtts, math.log(max(packets / 10, 1.0)) / math.log(1.5) + 4)
    return max(base, rtts * rtt)


@dataclass(frozen=True)
class EndpointReport:
    sending: bool
    window: float  # seconds between the two snapshots
    bytes_in_window: int  # bytes read (receiver) in the window
    retransmits: int  # sender: segments retransmitted in the window
    busy_us: int  # sender: time with data in flight
    rwnd_limited_us: int
    sndbuf_limited_us: int
    cpu_share: float
    delivered_bytes: int = 0  # sender: payload delivered in the window (tcpi_delivered x MSS)


def _sum_info(infos: list[TcpInfo]) -> tuple[int, int, int, int]:
    return (
        sum(i.total_retrans for i in infos),
        sum(i.busy_time_us for i in infos),
        sum(i.rwnd_limited_us for i in infos),
        sum(i.sndbuf_limited_us for i in infos),
    )


def _endpoint(socks: list[socket.socket], sending: bool, board: Board, *, ends: bool) -> EndpointReport:
    """Run the streams of one end until the exchange is over; snapshot at the board's window.

    ``ends``: this end closes the exchange after the window (the client); the other end runs until
    its peer closes or the board says stop.
    """
    counts = [0] * len(socks)
    stop = threading.Event()

    def send(sock: socket.socket) -> None:
        chunk = memoryview(bytearray(_CHUNK))
        while not stop.is_set():
            try:
                sock.send(chunk)
            except TimeoutError:
                continue  # look at the stop flag again
            except OSError:
                return  # the peer reset or closed: the stream is over

    def receive(i: int, sock: socket.socket) -> None:
        buf = bytearray(_CHUNK)
        while not stop.is_set():
            try:
                n = sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError:
                return
            if not n:
                return
            counts[i] += n

    for s in socks:
        s.settimeout(_POLL)
    threads = [
        threading.Thread(target=send, args=(s,), daemon=True)
        if sending
        else threading.Thread(target=receive, args=(i, s), daemon=True)
        for i, s in enumerate(socks)
    ]
    for t in threads:
        t.start()
    try:
        board.wait("t_end", timeout=CONNECT_TIMEOUT + 60, alive=lambda: not board["stop"])
        meter = CpuMeter()
        _sleep_until(board["t_start"])
        meter.start()
        t0, c0 = time.monotonic(), sum(counts)
        i0 = _sum_info([tcp_info(s) for s in socks]) if sending else (0, 0, 0, 0)
        d0 = _delivered(socks) if sending else 0
        _sleep_until(board["t_end"])
        t1, c1 = time.monotonic(), sum(counts)
        i1 = _sum_info([tcp_info(s) for s in socks]) if sending else (0, 0, 0, 0)
        d1 = _delivered(socks) if sending else 0
        share = meter.stop()
        if not ends:  # run until the peer resets the streams (or the parent says stop)
            while any(t.is_alive() for t in threads) and not board["stop"]:
                time.sleep(_POLL / 4)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5.0)
        for s in socks:
            # end with a reset: queued data is discarded instead of draining over a slow path
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    return EndpointReport(
        sending, t1 - t0, c1 - c0, i1[0] - i0[0], i1[1] - i0[1], i1[2] - i0[2], i1[3] - i0[3], share, d1 - d0
    )


def _delivered(socks: list[socket.socket]) -> int:
    """Payload bytes the peer has received so far, each segment counted once when first ACKed or
    SACKed (tcpi_delivered x MSS): unlike the receiver's in-order count it does not jump when a
    loss recovery releases everything held out of order."""
    infos = [tcp_info(s) for s in socks]
    return sum(i.delivered * i.snd_mss for i in infos)


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def serve(workload: Workload, options: SocketOptions, board: Board, host: str) -> EndpointReport:
    listener, _ = open_listener(host, options)
    board["port"] = listener.getsockname()[1]
    socks = accept_many(listener, max(workload.streams, 1), options)
    listener.close()
    return _endpoint(socks, workload.direction is Direction.DOWNLOAD, board, ends=False)


def drive(
    workload: Workload, options: SocketOptions, board: Board, host: str, warmup: float, duration: float
) -> EndpointReport:
    socks = connect_many(max(workload.streams, 1), host, int(board["port"]), options)
    board["t_start"] = time.monotonic() + warmup
    board["t_end"] = board["t_start"] + duration
    return _endpoint(socks, workload.direction is Direction.UPLOAD, board, ends=True)


def run_repeat(env: RepeatEnv) -> Sample:
    board = Board("port", "stop", "t_start", "t_end")
    w = env.workload
    server = start_server(env, board, serve, w, env.options, board, env.server_host)
    try:
        client: EndpointReport = env.sandbox.run(
            env.client_side,
            drive,
            w,
            env.options,
            board,
            env.server_host,
            warmup_for(env.path.rtt, env.warmup, env.path.rate_bps),
            env.duration,
        )
    finally:
        server_report: EndpointReport = stop_server(server, board)
    sender, receiver = (client, server_report) if client.sending else (server_report, client)
    sample = Sample()
    if sender.delivered_bytes > 0 and sender.window > 0:
        # what the path delivered in the window, counted at the sender: the receiver's reads jump by
        # megabytes when a loss recovery ends inside the window (measured: 439-477 Mbit/s read in 1 s
        # windows of a 400 Mbit/s path whose own counters never passed 418)
        sample.metrics["goodput_mbps"] = sender.delivered_bytes * 8 / sender.window / 1e6
    else:
        window = receiver.window or env.duration
        sample.metrics["goodput_mbps"] = receiver.bytes_in_window * 8 / window / 1e6
    sample.metrics["retransmits"] = float(sender.retransmits)
    busy = sender.busy_us
    sample.metrics["rwnd_limited_pct"] = 100.0 * sender.rwnd_limited_us / busy if busy else 0.0
    sample.metrics["sndbuf_limited_pct"] = 100.0 * sender.sndbuf_limited_us / busy if busy else 0.0
    for name, report in (("sender", sender), ("receiver", receiver)):
        if report.cpu_share >= SATURATED:
            sample.bottleneck(
                f"{name} cpu", f"load generator: the bulk {name} was busy {report.cpu_share:.0%} of a core"
            )
    return sample
