"""udp: a UDP sender at a given rate and burst into a reader with a given service rate, in steady state.

The sender (client) sends ``udp_burst`` datagrams of ``udp_size`` bytes back to back, one burst every
``udp_burst / udp_rate`` seconds; each datagram carries its sequence number, send time and the phase it
was sent in (warm-up or window). The reader (server) processes at most ``service_rate`` datagrams
per second: after each datagram it owes ``1 / service_rate`` seconds of work and sleeps whenever it is
more than a millisecond ahead (while busy, making up at most 2 ms of oversleep), so datagrams pile up in its
receive buffer the way they do in front of a busy application.

**Steady state.** A result must not depend on the probe's duration. A receive buffer in front of a
reader is in its steady state once its queue has either drained (the reader found it empty: every
later burst starts from the same state) or filled (the socket dropped a datagram, read from the
``SO_RXQ_OVFL`` counter the kernel attaches to each datagram). With the offered rate above the
reader's service rate only a full buffer is steady: a large buffer merely takes longer to fill. The
measured window starts at the first burst after the workload's warm-up once the reader has seen that
state (at most :data:`STEADY_CAP` seconds later; otherwise the repeat is invalid: the buffer was still
filling). The window is a whole number of burst periods. After it the sender keeps the load on until
the reader has read through it (a datagram sent after the window, and one window length of reads), so
no datagram of the window counts as lost because the probe stopped before the reader reached it.

Metrics per repeat: ``delivered_fraction``: when the reader found its queue empty during the window,
the share of the window's datagrams it read (exact: every burst is a cycle); when it was behind all
along, the datagrams it read in one window length from the first window datagram over those sent in
the window (its own pace over the offered one: the steady share; the fate of the window's own
datagrams would swing with the kernel's release of receive memory a quarter of the buffer at a time, in
cycles longer than a short window). ``reader_latency_ms`` and ``reader_latency_p99_ms``: time from send
to read of the window's datagrams. The runner adds ``rcvbuf_errors`` from the server namespace's
``Udp.RcvbufErrors`` (the whole repeat, warm-up included).

**Overload.** When the offered rate exceeds what the reader serves (``udp_rate`` > reader capacity
by more than 5%), no buffer fixes it: at steady state the reader delivers capacity/offered whatever the
buffer, and a larger buffer only adds queueing delay. The repeat then carries the note
:data:`OVERLOAD_NOTE` with both rates, and the search's objective refuses candidates that add delay.

Capacity on the development machine (2 cores shared with other work, plain veth sandbox, 1200-byte
datagrams): the sender offers ~220k datagrams/s (~2.1 Gbit/s), the reader serves ~230k datagrams/s when
nothing paces it. A repeat is invalid ("load generator: ...") when the sender offered less than 95% of
``udp_rate``, when a burst took more than half the time the reader needs to serve it to send (then the
arrivals were not a burst), or when the reader, with datagrams waiting, processed fewer than
90% of ``service_rate``.
"""

from __future__ import annotations

import errno
import select
import socket
import statistics
import struct
import time
from dataclasses import dataclass
from enum import IntEnum

from tuner.errors import ProbeError
from tuner.probe.base import RepeatEnv, Sample, percentile, start_server, stop_server
from tuner.probe.board import Board
from tuner.probe.cpu import CpuMeter
from tuner.probe.sockopts import SocketOptions
from tuner.workload import Workload

__all__ = [
    "AFTER_CAP",
    "COUNTER_METRICS",
    "OVERLOAD_NOTE",
    "STEADY_CAP",
    "Phase",
    "ReaderReport",
    "SenderReport",
    "drive",
    "overload_note",
    "run_repeat",
    "serve",
]

_HEADER = struct.Struct("=QdB")  # sequence number, send time (time.monotonic), phase
# metrics the runner takes from kernel counter deltas of one repeat: name -> (side, counter)
COUNTER_METRICS = {"rcvbuf_errors": ("server", "Udp.RcvbufErrors")}
_CATCH_UP = (
    0.002  # a busy reader may make up this much oversleep (more would let it swallow bursts at full speed)
)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # per-socket drop counter as ancillary data (Linux)
_ANC = socket.CMSG_SPACE(4)
AFTER_CAP = 30.0  # seconds the sender keeps the load on after the window until the reader got through it
STEADY_CAP = 20.0  # seconds of warm-up beyond the workload's own after which an unsteady buffer is invalid
_OVERLOAD_MARGIN = 1.05
OVERLOAD_NOTE = "buffers cannot fix this"


class Phase(IntEnum):
    WARMUP = 0
    WINDOW = 1
    AFTER = 2


def overload_note(capacity: float, offered: float) -> str:
    """The symptom of a reader slower than its offered load, and what can fix it."""
    return (
        f"reader capacity {capacity:,.0f}/s < offered {offered:,.0f}/s: {OVERLOAD_NOTE} (at steady state "
        f"the reader delivers at most {capacity / offered:.0%}: a buffer that holds the bursts reaches that, "
        "no buffer goes beyond it, and a larger one only adds delay). "
        "What can: more readers with SO_REUSEPORT, batched reads with recvmmsg, a faster reader"
    )


@dataclass(frozen=True)
class ReaderReport:
    window_read: int  # datagrams sent in the window that the reader read (their fate)
    paced_read: int  # datagrams of any phase read during one window length from the first
    # window datagram read (the reader's rate while it is behind)
    emptied: bool  # the reader found its queue empty during that time
    latencies: list[float]  # seconds from send to read, for the window's datagrams
    processed: int  # datagrams read while more were waiting (for the service-rate check)
    busy_seconds: float  # time spent reading and serving while more were waiting
    drops: int  # the socket's own drop counter (SO_RXQ_OVFL) at the last read
    cpu_share: float


def _steady(board: Board, how: float) -> None:
    if not board["steady"]:
        board["steady"] = how


def serve(workload: Workload, options: SocketOptions, board: Board, host: str) -> ReaderReport:
    """Read until the sender is done; tell it when the buffer has reached its steady state and when the
    window has been read (``board["done"]``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    options.datagram(sock)
    sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    sock.bind((host, 0))
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    overload = workload.service_rate > 0 and workload.udp_rate > workload.service_rate
    cost = 1.0 / workload.service_rate if workload.service_rate > 0 else 0.0
    buf = bytearray(65536)
    latencies: list[float] = []
    window_read = paced_read = processed = drops = 0
    seen_data = emptied = past = False
    r0 = r1 = 0.0  # one window length of reads from the first window datagram read
    busy = 0.0
    owed_until = 0.0
    waited = True  # the last read came after waiting for data (not from a backlog)
    meter = CpuMeter()
    meter.start()
    board["port"] = sock.getsockname()[1]
    while not board["stop"] and not board["sent_all"]:
        t_try = time.monotonic()
        try:
            n, anc, _, _ = sock.recvmsg_into([buf], _ANC)
        except BlockingIOError:
            if seen_data and not overload:
                _steady(board, 1)  # drained: every later burst starts from an empty queue
            if r0 and t_try < r1:
                emptied = True
            waited = True
            poller.poll(20)
            continue
        now = time.monotonic()
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(data) >= 4:
                drops = int.from_bytes(data[:4], "little")
        if drops:
            _steady(board, 2)  # full: the socket drops what does not fit
        seen_data = True
        if n >= _HEADER.size:
            _, sent, phase = _HEADER.unpack_from(buf)
            if phase == Phase.WINDOW:
                window_read += 1
                latencies.append(now - sent)
                if not r0:
                    r0, r1 = now, now + (board["t_end"] - board["t_start"])
            elif phase == Phase.AFTER:
                past = True
        if r0 and now < r1:
            paced_read += 1
        if past and r0 and now >= r1 and not board["done"]:
            board["done"] = now
        # a reader that waited for data has no credit; a busy one may make up for oversleeping
        owed_until = (now if waited else max(owed_until, now - _CATCH_UP)) + cost
        ahead = owed_until - time.monotonic()
        if ahead > 0.001:
            time.sleep(ahead)
        if not waited:  # it was already queued: the reader is the bottleneck
            processed += 1
            busy += time.monotonic() - t_try
        waited = False
    sock.close()
    return ReaderReport(window_read, paced_read, emptied, latencies, processed, busy, drops, meter.stop())


@dataclass(frozen=True)
class SenderReport:
    sent_in_window: int
    window_seconds: float
    offered_rate: float  # datagrams per second actually sent in the window
    send_errors: int  # in the window
    steady: bool  # the window started in the buffer's steady state
    warmup_seconds: float  # warm-up actually run (the workload's own plus the wait for steadiness)
    read_through: bool  # the reader read the window and a datagram sent after it
    cpu_share: float
    burst_seconds: float = 0.0  # median time one burst of the window took to send


def drive(
    workload: Workload, options: SocketOptions, board: Board, host: str, warmup: float, duration: float
) -> SenderReport:
    if workload.udp_rate <= 0:
        raise ProbeError("a udp workload needs a positive udp_rate")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        options.datagram(sock)
        sock.connect((host, int(board["port"])))
        payload = bytearray(max(workload.udp_size, _HEADER.size))
        burst = max(workload.udp_burst, 1)
        period = burst / workload.udp_rate
        t0 = time.monotonic()
        t_min, t_cap = t0 + warmup, t0 + warmup + STEADY_CAP
        t_start = t_end = t_after = 0.0
        phase = Phase.WARMUP
        seq = sent_in_window = errors = left = 0
        burst_times: list[float] = []  # how long each burst of the window took to send
        steady = False
        share = 0.0
        meter = CpuMeter()
        due = t0
        while True:
            now = time.monotonic()
            if phase is Phase.WARMUP and now >= t_min and (board["steady"] or now >= t_cap):
                steady = bool(board["steady"])
                # the window is a whole number of burst periods, so it holds the same share of each cycle
                periods = left = max(1, round(duration / period))
                phase, t_start, t_end = Phase.WINDOW, due, due + periods * period
                board["t_end"] = t_end
                board["t_start"] = t_start
                meter.start()
            elif phase is Phase.WINDOW and not left:
                share = meter.stop()
                phase, t_after = Phase.AFTER, now
            elif phase is Phase.AFTER and (board["done"] or now >= t_after + AFTER_CAP):
                break
            if due > now:
                time.sleep(due - now)
            t_burst = time.monotonic()
            for _ in range(burst):
                _HEADER.pack_into(payload, 0, seq, time.monotonic(), phase)
                seq += 1
                try:
                    sock.send(payload)
                except OSError as exc:  # ENOBUFS and friends: the datagram never left
                    if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                        raise
                    if phase is Phase.WINDOW:
                        errors += 1
                    continue
                if phase is Phase.WINDOW:
                    sent_in_window += 1
            if phase is Phase.WINDOW:
                left -= 1
                burst_times.append(time.monotonic() - t_burst)
            due += period
            if due < now - 1.0:  # the sender fell far behind (host busy): do not send a backlog at once
                due = now
    finally:
        board["sent_all"] = time.monotonic()
        sock.close()
    window = max((t_after or t_end) - t_start, 1e-9)  # as long as the window's bursts actually took
    return SenderReport(
        sent_in_window,
        window,
        sent_in_window / window,
        errors,
        steady,
        t_start - t0,
        bool(board["done"]),
        share,
        statistics.median(burst_times) if burst_times else 0.0,
    )


def run_repeat(env: RepeatEnv) -> Sample:
    board = Board("port", "stop", "t_start", "t_end", "sent_all", "steady", "done")
    w = env.workload
    server = start_server(env, board, serve, w, env.options, board, env.server_host)
    try:
        sender: SenderReport = env.sandbox.run(
            env.client_side, drive, w, env.options, board, env.server_host, env.warmup, env.duration
        )
    finally:
        board["sent_all"] = board["sent_all"] or time.monotonic()  # the reader ends
        reader: ReaderReport = stop_server(server, None, timeout=10.0)
    sample = Sample()
    if reader.emptied:
        # the queue drained during the window: the fate of the window's own datagrams is exact
        delivered = reader.window_read / sender.sent_in_window if sender.sent_in_window else 0.0
    else:
        # the reader was behind all along: it read at its own pace, so the datagrams it read in one
        # window length over those sent in one window length is the steady share. (The fate of the
        # window's own datagrams would swing with the kernel's release of receive memory, a quarter of
        # the buffer at a time, in cycles longer than a short window.)
        delivered = min(1.0, reader.paced_read / sender.sent_in_window) if sender.sent_in_window else 0.0
    sample.metrics["delivered_fraction"] = delivered
    if reader.latencies:
        xs = sorted(reader.latencies)
        sample.metrics["reader_latency_ms"] = statistics.median(xs) * 1e3
        sample.metrics["reader_latency_p99_ms"] = percentile(xs, 99) * 1e3
    if sender.send_errors:
        sample.notes.append(
            f"{sender.send_errors} datagrams could not be sent (the sender's buffer was full)"
        )
    if not sender.steady:
        sample.bottleneck(
            "unsteady",
            f"probe: the receive buffer had neither drained nor filled after "
            f"{sender.warmup_seconds:.3g} s of load: it was still filling, so "
            "the window would not show the steady state",
        )
    if not sender.read_through:
        sample.bottleneck(
            "unread", f"probe: the reader had not read through the window {AFTER_CAP:g} s after it"
        )
    if sender.offered_rate < 0.95 * w.udp_rate:
        sample.bottleneck(
            "sender rate",
            f"load generator: the sender offered {sender.offered_rate:.0f} of {w.udp_rate:.0f} datagrams/s",
        )
    serve_s = max(w.udp_burst, 1) / w.service_rate if w.service_rate > 0 else 0.0
    if w.udp_burst > 1 and serve_s and sender.burst_seconds > 0.5 * serve_s:
        sample.bottleneck(
            "burst",
            f"load generator: a burst of {w.udp_burst} took {sender.burst_seconds * 1e3:.3g} ms "
            f"to send: it arrived less than twice as fast as the reader serves it ({serve_s * 1e3:.3g} ms)",
        )
    capacity = w.service_rate
    if reader.busy_seconds > 0.1 and reader.processed > 100:
        capacity = reader.processed / reader.busy_seconds
        if capacity < 0.9 * w.service_rate:
            sample.bottleneck(
                "reader rate",
                f"load generator: the reader served {capacity:.0f} of "
                f"{w.service_rate:.0f} datagrams/s with datagrams waiting",
            )
    if w.service_rate > 0 and w.udp_rate > _OVERLOAD_MARGIN * min(capacity, w.service_rate):
        # the service rate as the capacity unless the reader fell short of it (then the repeat is invalid
        # anyway): one note per measurement, not one per repeat's noise
        shown = w.service_rate if capacity >= 0.9 * w.service_rate else capacity
        sample.notes.append(overload_note(shown, w.udp_rate))
    return sample
