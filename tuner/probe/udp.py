"""udp: a UDP sender at a given rate and burst into a reader with a given service rate.

The sender (client) sends ``udp_burst`` datagrams of ``udp_size`` bytes back to back, one burst every
``udp_burst / udp_rate`` seconds; each datagram carries its sequence number and send time. The reader
(server) processes at most ``service_rate`` datagrams per second: after each datagram it owes
``1 / service_rate`` seconds of work and sleeps whenever it is more than a millisecond ahead (making up
at most 2 ms of oversleep), so datagrams pile up in its receive buffer the way they do in front of a
busy application.

Metrics per repeat, over the datagrams sent in the measured window: ``delivered_fraction`` (read by
the reader / sent), ``reader_latency_ms`` (median time from send to read); the runner adds
``rcvbuf_errors`` from the server namespace's ``Udp.RcvbufErrors``.

Capacity on the development machine (2 cores shared with other work, plain veth sandbox, 1200-byte
datagrams, ``python3 bench/probes.py``): the sender offers ~220k datagrams/s (~2.1 Gbit/s), the reader
serves ~230k datagrams/s when nothing paces it. A repeat is invalid ("load generator: ...") when the
sender offered less than 95% of ``udp_rate``, or when the reader, with datagrams waiting, processed
fewer than 90% of ``service_rate``.
"""

from __future__ import annotations

import socket
import statistics
import struct
import time
from dataclasses import dataclass

from tuner.errors import ProbeError
from tuner.probe.base import RepeatEnv, Sample, start_server, stop_server
from tuner.probe.board import Board
from tuner.probe.sockopts import SocketOptions
from tuner.probe.cpu import CpuMeter
from tuner.workload import Workload

__all__ = ["COUNTER_METRICS", "SenderReport", "ReaderReport", "serve", "drive", "run_repeat", "drain_time"]

_HEADER = struct.Struct("=Qd")   # sequence number, send time (time.monotonic)
# metrics the runner takes from kernel counter deltas of one repeat: name -> (side, counter)
COUNTER_METRICS = {"rcvbuf_errors": ("server", "Udp.RcvbufErrors")}
_CATCH_UP = 0.002   # the reader may make up this much oversleep, so a busy reader averages service_rate
_DRAIN_IDLE = 0.1                # the reader stops this long after the last datagram once the sender is done


@dataclass(frozen=True)
class ReaderReport:
    received_in_window: int      # datagrams sent in the window that the reader read
    latencies: list[float]       # seconds from send to read, for those
    processed: int               # datagrams read while it had work waiting (for the service-rate check)
    busy_seconds: float          # time spent reading and serving (not waiting for data)
    cpu_share: float


def serve(workload: Workload, options: SocketOptions, board: Board, host: str, drain: float) -> ReaderReport:
    """Read until the sender is done and the buffer is drained (at most ``drain`` s after the window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    options.datagram(sock)
    sock.bind((host, 0))
    sock.settimeout(0.02)
    cost = 1.0 / workload.service_rate if workload.service_rate > 0 else 0.0
    buf = bytearray(65536)
    latencies: list[float] = []
    received = processed = 0
    busy = 0.0
    owed_until = 0.0
    last = time.monotonic()
    meter = CpuMeter()
    meter.start()
    board["port"] = sock.getsockname()[1]
    while not board["stop"]:
        t_wait = time.monotonic()
        if board["sent_all"] and (t_wait - last > _DRAIN_IDLE or t_wait > board["t_end"] + drain):
            break
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            continue
        now = last = time.monotonic()
        waiting = now - t_wait < 1e-4   # it was already in the buffer: the reader is the bottleneck
        if n >= _HEADER.size:
            _, sent = _HEADER.unpack_from(buf)
            if board["t_start"] <= sent < board["t_end"]:
                received += 1
                latencies.append(now - sent)
        owed_until = max(owed_until, now - _CATCH_UP) + cost
        ahead = owed_until - time.monotonic()
        if ahead > 0.001:
            time.sleep(ahead)
        if waiting:
            processed += 1
            busy += time.monotonic() - t_wait
    sock.close()
    return ReaderReport(received, latencies, processed, busy, meter.stop())


@dataclass(frozen=True)
class SenderReport:
    sent_in_window: int
    offered_rate: float          # datagrams per second actually sent in the window
    send_errors: int
    cpu_share: float


def drive(workload: Workload, options: SocketOptions, board: Board, host: str, warmup: float,
          duration: float) -> SenderReport:
    if workload.udp_rate <= 0:
        raise ProbeError("a udp workload needs a positive udp_rate")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        options.datagram(sock)
        sock.connect((host, int(board["port"])))
        payload = bytearray(max(workload.udp_size, _HEADER.size))
        burst = max(workload.udp_burst, 1)
        period = burst / workload.udp_rate
        now = time.monotonic()
        t_start, t_end = now + warmup, now + warmup + duration
        board["t_start"], board["t_end"] = t_start, t_end
        seq = sent_in_window = errors = 0
        meter = CpuMeter()
        measuring = False
        due = now
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            if not measuring and now >= t_start:
                measuring = True
                meter.start()
            if due > now:
                time.sleep(due - now)
            for _ in range(burst):
                sent = time.monotonic()
                _HEADER.pack_into(payload, 0, seq, sent)
                seq += 1
                try:
                    sock.send(payload)
                except OSError:   # ENOBUFS and friends: the datagram never left
                    errors += 1
                    continue
                if t_start <= sent < t_end:
                    sent_in_window += 1
            due += period
        share = meter.stop() if measuring else 0.0
    finally:
        board["sent_all"] = time.monotonic()
        sock.close()
    return SenderReport(sent_in_window, sent_in_window / duration, errors, share)


def drain_time(duration: float) -> float:
    """Datagrams of the window still unread this long after it are counted as not delivered."""
    return max(1.0, duration)


def run_repeat(env: RepeatEnv) -> Sample:
    board = Board("port", "stop", "t_start", "t_end", "sent_all")
    w = env.workload
    drain = drain_time(env.duration)
    server = start_server(env, board, serve, w, env.options, board, env.server_host, drain)
    try:
        sender: SenderReport = env.sandbox.run(env.client_side, drive, w, env.options, board, env.server_host,
                                               env.warmup, env.duration)
    finally:
        board["sent_all"] = board["sent_all"] or time.monotonic()  # the reader drains, then ends
        reader: ReaderReport = stop_server(server, None, timeout=drain + 10.0)
    sample = Sample()
    sample.metrics["delivered_fraction"] = (reader.received_in_window / sender.sent_in_window
                                            if sender.sent_in_window else 0.0)
    if reader.latencies:
        sample.metrics["reader_latency_ms"] = statistics.median(reader.latencies) * 1e3
    if sender.send_errors:
        sample.notes.append(f"{sender.send_errors} datagrams could not be sent (the sender's buffer was full)")
    if sender.offered_rate < 0.95 * w.udp_rate:
        sample.bottleneck("sender rate", f"load generator: the sender offered {sender.offered_rate:.0f} of "
                                         f"{w.udp_rate:.0f} datagrams/s")
    if reader.busy_seconds > 0.1 and reader.processed > 100:
        rate = reader.processed / reader.busy_seconds
        if rate < 0.9 * w.service_rate:
            sample.bottleneck("reader rate", f"load generator: the reader served {rate:.0f} of "
                                             f"{w.service_rate:.0f} datagrams/s with datagrams waiting")
    return sample
