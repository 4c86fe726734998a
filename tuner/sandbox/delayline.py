"""The userspace delay line: one direction of an emulated path between two TUN devices.

One forwarder process per direction reads IP packets from the sending side's TUN device and writes
them into the receiving side's TUN device after the path has had its way with them:

1. Bernoulli loss on ingress (probability ``loss``, each packet on the wire independently);
2. a finite FIFO bottleneck of ``queue_packets`` packets drained at ``rate_bps`` (IP bytes on the wire):
   a packet that finds the queue full is dropped (tail drop);
3. departure = end of its serialization + the one-way ``delay``, less the line's own forwarding
   overhead once the sandbox has measured it (:meth:`LineStats.set_trim`).

With ``LineParams.vnet`` the devices hand over TCP super-packets (GSO, up to 64 KiB, see
:mod:`tuner.sandbox.gso`): one read instead of ~44. The line still counts them as the packets they
stand for on the wire (rate, queue, loss, lateness). It passes a super-packet whole when nothing is lost
and it is no longer on the wire than ``_CHUNK_SECONDS``; otherwise it carves it into pieces of
consecutive segments: lost segments are cut out (per-segment Bernoulli loss, drawn as geometric gaps),
segments that do not fit the queue are dropped, and at low rates a piece spans at most
``_CHUNK_SECONDS`` so its first segment is not held back for the others.

With a fixed delay departures are monotonic, so a deque is the whole scheduler. The loop sleeps in
``select`` until the next departure or the next arrival (timer slack set to 1 ns), drains arrivals in
batches, and sends everything due. It runs ahead of the programs it carries (:func:`_outrank_owner`). Its counters live in a small shared-memory block
(:class:`LineStats`) that the sandbox reads at any time without talking to the process.
"""

from __future__ import annotations

import ctypes
import gc
import math
import mmap
import os
import random
import select
import signal
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from tuner.sandbox.gso import VNET_HDR_LEN, carve, shape_of

__all__ = [
    "LATE_BUCKETS",
    "PROFILE_ENV",
    "DirectionSnapshot",
    "LineParams",
    "LineStats",
    "late_percentile",
    "run_line",
]

# lateness histogram: 10 us buckets below 2 ms, 1 ms buckets up to 100 ms, then one overflow bucket
LATE_BUCKETS = 300
_FINE = 200  # buckets of 10 us
_FINE_UNIT = 1e-5  # seconds per fine bucket
_COARSE_PER = 100  # fine units per coarse bucket (1 ms)

_READ_SIZE = 65535  # the largest IP packet (a GSO super-packet included)
_CHUNK_SECONDS = 0.0002  # a super-packet is delivered in pieces no longer than this on the wire: its
# first segment is never later than this (RTT accuracy at low rates)
_BATCH = 64  # arrivals drained before departures are looked at again
_FLUSH_EVERY = 0.02  # seconds between counter publications while busy
_LONG_WAIT = 0.001  # sleeps longer than this are shortened by the learned oversleep
_MAX_EARLY = 0.0005  # never wake (and spin) more than this early
_NICE_BOOST = 10  # nice levels the line stands above its owner (and the programs it carries)
_RT_PRIORITY = 1  # SCHED_FIFO priority when the owner runs at normal priority

# shared block layout (int64 slots)
_SEQ = 0  # seqlock: odd while the forwarder writes
_EPOCH = 1  # the reset epoch the published counters belong to
_PACKETS = 2
_BYTES = 3
_SENT = 4
_SENT_BYTES = 5
_LOSS = 6
_QUEUE = 7
_PARTITION = 8
_WRITE_ERR = 9
_LATE_MAX_NS = 10
_READS = 11
_WRITES = 12
_HIST = 16
_CTRL_EPOCH = _HIST + LATE_BUCKETS  # written by the sandbox: ask for a reset
_CTRL_PARTITIONED = _CTRL_EPOCH + 1  # written by the sandbox: drop everything while nonzero
_CTRL_TRIM_NS = _CTRL_PARTITIONED + 1  # written by the sandbox: ns taken off the delay (its own overhead)
_CTRL_LOSSLESS = _CTRL_TRIM_NS + 1  # written by the sandbox: the random loss is paused while nonzero
_SLOTS = _CTRL_LOSSLESS + 1
_NO_LOSS = 1 << 62  # the gap to the next lost segment while the loss is paused

_PR_SET_TIMERSLACK = 29
PROFILE_ENV = "TUNER_LINE_PROFILE"


@dataclass(frozen=True)
class LineParams:
    """One direction of the path. ``delay`` is one-way, in seconds; ``rate_bps`` counts IP bytes on the
    wire (a super-packet of n segments is n packets with their headers); the queue counts packets."""

    delay: float
    rate_bps: float
    loss: float
    queue_packets: int
    seed: int | None = None
    vnet: bool = False  # frames carry a virtio_net_hdr and may be TCP super-packets (gso.py)


@dataclass(frozen=True)
class DirectionSnapshot:
    """Counters of one direction since its last reset."""

    packets: int  # read from the sending side's TUN device
    bytes: int
    sent_packets: int  # written into the receiving side's TUN device
    sent_bytes: int
    dropped_loss: int
    dropped_queue: int
    dropped_partition: int
    write_errors: int
    late_max: float  # seconds
    late_hist: tuple[int, ...]
    reads: int = 0  # frames read (a super-packet is one read and many packets)
    writes: int = 0  # frames written

    @classmethod
    def zero(cls) -> DirectionSnapshot:
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0.0, (0,) * LATE_BUCKETS)


def _bucket_upper(i: int) -> float:
    """Upper edge of lateness bucket ``i`` in seconds."""
    if i < _FINE:
        return (i + 1) * _FINE_UNIT
    return (_FINE + (i - _FINE + 1) * _COARSE_PER) * _FINE_UNIT


def late_percentile(hist: tuple[int, ...] | list[int], q: float) -> float:
    """The ``q`` quantile (0..1) of lateness in seconds, as the upper edge of its bucket (0 if empty)."""
    total = sum(hist)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank and n:
            return _bucket_upper(i)
    return _bucket_upper(len(hist) - 1)


class LineStats:
    """The shared-memory block of one direction (created before the forwarder forks)."""

    def __init__(self) -> None:
        self._mm = mmap.mmap(-1, _SLOTS * 8)  # anonymous and MAP_SHARED: visible across fork
        self.slots = memoryview(self._mm).cast("q")

    def request_reset(self) -> None:
        self.slots[_CTRL_EPOCH] += 1

    def set_partitioned(self, on: bool) -> None:
        self.slots[_CTRL_PARTITIONED] = 1 if on else 0

    def set_lossless(self, on: bool) -> None:
        """Pause the random loss while ``on``, from the forwarder's next wake-up (packets it reads in the
        batch under way keep the old setting); the loss resumes where it was."""
        self.slots[_CTRL_LOSSLESS] = 1 if on else 0

    def set_trim(self, seconds: float) -> None:
        """Take ``seconds`` off the one-way delay from the next packet on: the forwarding overhead the
        line adds to every packet (TUN crossings, its wake-ups), measured when the path is built, so that
        the round trip the endpoints see is the one asked for. Set while the path carries nothing."""
        self.slots[_CTRL_TRIM_NS] = max(0, int(seconds * 1e9))

    def snapshot(self) -> DirectionSnapshot:
        s = self.slots
        for _ in range(1000):
            seq = s[_SEQ]
            if seq & 1:
                time.sleep(0)
                continue
            epoch = s[_EPOCH]
            head = s[_PACKETS : _WRITES + 1].tolist()
            hist = tuple(s[_HIST : _HIST + LATE_BUCKETS].tolist())
            if s[_SEQ] == seq:
                break
        else:  # pragma: no cover - the forwarder would have to publish nonstop for a second
            return DirectionSnapshot.zero()
        if epoch != s[_CTRL_EPOCH]:
            return DirectionSnapshot.zero()  # reset asked for and no packet since: nothing to count
        packets, nbytes, sent, sent_bytes, lost, queued, partitioned, errors, late_ns, reads, writes = head
        return DirectionSnapshot(
            packets,
            nbytes,
            sent,
            sent_bytes,
            lost,
            queued,
            partitioned,
            errors,
            late_max=late_ns / 1e9,
            late_hist=hist,
            reads=reads,
            writes=writes,
        )

    def close(self) -> None:
        self.slots.release()
        self._mm.close()


def _outrank_owner() -> str:
    """Run ahead of the programs the line carries, so its schedule holds on a busy machine.

    An owner at normal priority (nice <= 0: the CLI, tests, benches) gets a SCHED_FIFO line: it runs
    the moment a packet is due (measured on 2 loaded cores: p99 lateness 0.09 ms instead of 1-3 ms).
    The line's CPU is bounded by the traffic it carries, and the kernel's RT throttling caps it anyway.
    An owner that lowered itself (the daemon's searches) keeps the machine's other work first: its line
    only gets ``_NICE_BOOST`` nice levels over the owner. Returns what was done.
    """
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base <= 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(_RT_PRIORITY))
            return "fifo"
        except (OSError, AttributeError):
            pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, max(-20, base - _NICE_BOOST))
        return f"nice {max(-20, base - _NICE_BOOST)}"
    except OSError:
        return f"nice {base}"


def _set_timer_slack_ns(ns: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, ns, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _publish(
    s: memoryview,
    epoch: int,
    counts: tuple[int, ...],
    late_max: float,
    hist: array,
    reads: int = 0,
    writes: int = 0,
) -> None:
    s[_SEQ] += 1
    s[_EPOCH] = epoch
    s[_PACKETS : _WRITE_ERR + 1] = array("q", counts)
    s[_LATE_MAX_NS] = int(late_max * 1e9)
    s[_READS] = reads
    s[_WRITES] = writes
    s[_HIST : _HIST + LATE_BUCKETS] = hist
    s[_SEQ] += 1


def _geometric(rnd: Callable[[], float], loss: float) -> Callable[[], int]:
    """Draws of the number of segments that pass before the next lost one (Bernoulli loss ``loss``)."""
    if loss <= 0.0:
        return lambda: 1 << 62
    if loss >= 1.0:
        return lambda: 0
    scale = 1.0 / math.log1p(-loss)
    log = math.log
    return lambda: int(log(1.0 - rnd()) * scale)


def run_line(rfd: int, wfd: int, params: LineParams, stats: LineStats) -> NoReturn:
    """Forward packets from ``rfd`` to ``wfd`` forever (the process is killed to stop it).

    With ``TUNER_LINE_PROFILE=PREFIX`` in the environment the loop runs under cProfile and writes
    ``PREFIX.PID`` when it gets SIGTERM (the link then stops it with SIGTERM): where its time goes.
    """
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the owner, which then stops the line
    _set_timer_slack_ns(1)
    _outrank_owner()
    os.set_blocking(rfd, False)
    prefix = os.environ.get(PROFILE_ENV)
    if not prefix:
        _forward(rfd, wfd, params, stats)
    import cProfile

    prof = cProfile.Profile()

    def dump(signum: int, frame: object) -> None:
        prof.disable()
        prof.dump_stats(f"{prefix}.{os.getpid()}")
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    prof.runcall(_forward, rfd, wfd, params, stats)
    os._exit(1)  # pragma: no cover - _forward never returns


def _forward(rfd: int, wfd: int, params: LineParams, stats: LineStats) -> NoReturn:
    s = stats.slots
    vnet = params.vnet
    delay = params.delay
    trim_ns = 0
    sec_per_byte = 8.0 / params.rate_bps
    qlimit = params.queue_packets
    rnd = random.Random(params.seed).random
    next_gap = _geometric(rnd, params.loss)
    gap = next_gap()  # segments that pass before the next lost one
    lossless = held_gap = 0  # the loss paused (set_lossless), and the gap it resumes with
    read = os.read
    write = os.write
    clock = time.monotonic
    wait_for = select.select
    rlist = [rfd]
    empty: tuple[int, ...] = ()
    read_size = _READ_SIZE + (VNET_HDR_LEN if vnet else 0)
    hdr_len = VNET_HDR_LEN if vnet else 0
    chunk_bytes = _CHUNK_SECONDS / sec_per_byte  # wire bytes one delivered frame may span at most

    q: deque[tuple[float, bytes, int, int]] = deque()  # (departure, frame, segments, wire bytes)
    push = q.append
    pop = q.popleft
    bneck: deque[tuple[float, int]] = deque()  # (serialization end, segments) in the bottleneck
    bpush = bneck.append
    bpop = bneck.popleft
    occupancy = 0  # segments in the bottleneck
    link_free = 0.0

    epoch = s[_CTRL_EPOCH]
    hist = array("q", bytes(8 * LATE_BUCKETS))
    packets = nbytes = sent = sent_bytes = d_loss = d_queue = d_part = w_err = reads = writes = 0
    late_max = 0.0
    last_flush = 0.0
    early = 0.0  # seconds a long sleep starts early (learned)

    def publish() -> None:
        _publish(
            s,
            epoch,
            (packets, nbytes, sent, sent_bytes, d_loss, d_queue, d_part, w_err),
            late_max,
            hist,
            reads,
            writes,
        )

    publish()
    while True:
        if q:
            due = q[0][0]
            wait = due - clock()
            if wait > _LONG_WAIT:
                # a long sleep oversleeps (idle CPUs wake slowly): wake early by the oversleep seen
                # lately, then wait out the rest on the clock
                nap = wait - early
                t_nap = clock()
                if not wait_for(rlist, empty, empty, nap)[0]:
                    woke = clock()
                    early += (woke - t_nap - nap - early) * 0.25
                    early = 0.0 if early < 0.0 else (_MAX_EARLY if early > _MAX_EARLY else early)
                    while woke < due:
                        woke = clock()
            elif wait > 0:
                wait_for(rlist, empty, empty, wait)
        else:
            publish()
            last_flush = clock()
            wait_for(rlist, empty, empty)

        if s[_CTRL_EPOCH] != epoch:
            epoch = s[_CTRL_EPOCH]
            hist = array("q", bytes(8 * LATE_BUCKETS))
            packets = nbytes = sent = sent_bytes = d_loss = d_queue = d_part = w_err = reads = writes = 0
            late_max = 0.0
        partitioned = s[_CTRL_PARTITIONED]
        if s[_CTRL_LOSSLESS] != lossless:
            lossless = s[_CTRL_LOSSLESS]
            if lossless:
                held_gap, gap = gap, _NO_LOSS
            else:
                gap = held_gap
        if s[_CTRL_TRIM_NS] != trim_ns:
            trim_ns = s[_CTRL_TRIM_NS]
            delay = max(0.0, params.delay - trim_ns / 1e9)

        # arrivals
        now = clock()
        for _ in range(_BATCH):
            try:
                frame = read(rfd, read_size)
            except BlockingIOError:
                break
            reads += 1
            shape = None
            if vnet and frame[1] & 0x7F:
                shape = shape_of(frame)
                segs = shape.segments
                wire = shape.wire_bytes
                if segs == 1:
                    shape = None
            else:
                segs = 1
                wire = len(frame) - hdr_len
            packets += segs
            nbytes += wire
            if partitioned:
                d_part += segs
                continue
            while bneck and bneck[0][0] <= now:
                occupancy -= bpop()[1]
            if gap >= segs and occupancy + segs <= qlimit and (segs == 1 or wire <= chunk_bytes):
                # the common case: the whole frame passes as it is
                gap -= segs
                start = link_free if link_free > now else now
                link_free = start + wire * sec_per_byte
                bpush((link_free, segs))
                occupancy += segs
                push((link_free + delay, frame, segs, wire))
                continue
            # per segment: which ones the loss takes, then pieces the queue admits, each piece no
            # longer on the wire than one chunk
            runs: list[tuple[int, int]] = []
            pos = 0
            while gap < segs:
                lost = gap
                if lost > pos:
                    runs.append((pos, lost - pos))
                d_loss += 1
                pos = lost + 1
                gap = lost + 1 + next_gap()
            if pos < segs:
                runs.append((pos, segs - pos))
            gap -= segs
            if shape is None:
                per_chunk = 1
                headers = gso = 0
                payload = wire
            else:
                headers = shape.headers
                gso = shape.gso_size
                payload = wire - segs * headers
                per_chunk = max(1, int(chunk_bytes / (gso + headers)))
            for first, count in runs:
                while count > 0:
                    n = per_chunk if count > per_chunk else count
                    room = qlimit - occupancy
                    if room < n:
                        # the queue is full after ``room`` more: the rest of this run is dropped
                        if room <= 0:
                            d_queue += count
                            break
                        d_queue += count - room
                        count = n = room
                    if shape is None:
                        data, w = frame, wire
                    else:
                        data = carve(frame, shape, first, n)
                        end = (first + n) * gso
                        w = (payload if end > payload else end) - first * gso + n * headers
                    start = link_free if link_free > now else now
                    link_free = start + w * sec_per_byte
                    bpush((link_free, n))
                    occupancy += n
                    push((link_free + delay, data, n, w))
                    first += n
                    count -= n

        # departures
        while q:
            due, frame, segs, wire = q[0]
            now = clock()
            if due > now:
                break
            pop()
            try:
                write(wfd, frame)
            except OSError:
                w_err += segs
                continue
            writes += 1
            sent += segs
            sent_bytes += wire
            late = now - due
            i = int(late * 1e5)
            if i >= _FINE:
                i = _FINE + (i - _FINE) // _COARSE_PER
                if i >= LATE_BUCKETS:
                    i = LATE_BUCKETS - 1
            hist[i] += segs
            if late > late_max:
                late_max = late

        if now - last_flush > _FLUSH_EVERY:
            publish()
            last_flush = now
