"""The delay line's scheduler, run between two datagram socket pairs (no namespaces, no root)."""

from __future__ import annotations

import itertools
import os
import statistics
import struct
import time

import pytest

from tuner.sandbox.delayline import LATE_BUCKETS, late_percentile


def test_every_packet_is_held_for_the_one_way_delay(line_factory):
    line = line_factory(delay=0.03)
    delays = []
    for i in range(15):
        line.send(struct.pack("d", time.monotonic()) + bytes(100))
        arrived, data = line.next_arrival(i)
        delays.append(arrived - struct.unpack("d", data[:8])[0])
    assert abs(statistics.median(delays) - 0.03) < 0.002, delays
    assert min(delays) >= 0.03


def test_the_rate_cap_spaces_packets_and_a_full_queue_drops_the_rest(line_factory):
    line = line_factory(delay=0.005, rate_bps=8e6, queue_packets=10)  # 1000 bytes = 1 ms on the wire
    sent = 60
    for _ in range(sent):
        line.send(bytes(1000))
    got = line.receive_all()
    line.settle()
    snap = line.stats.snapshot()
    assert snap.packets == sent
    assert snap.dropped_queue >= sent // 2
    assert len(got) == snap.sent_packets == sent - snap.dropped_queue
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(got)]
    assert 0.0007 < statistics.median(gaps) < 0.0015, gaps


def test_bernoulli_loss_drops_about_the_configured_share(line_factory):
    line = line_factory(loss=0.2)
    sent = 600
    for _ in range(sent):
        line.send(b"x" * 64)
    got = line.receive_all()
    line.settle()
    snap = line.stats.snapshot()
    assert snap.packets == sent
    assert 0.14 < snap.dropped_loss / sent < 0.26
    assert len(got) == sent - snap.dropped_loss


def test_a_reset_starts_the_counters_again_and_a_partition_drops_everything(line_factory):
    line = line_factory()
    for _ in range(5):
        line.send(b"a")
    assert len(line.receive_all(0.1)) == 5
    line.settle()
    assert line.stats.snapshot().sent_packets == 5
    line.stats.request_reset()
    assert line.stats.snapshot().packets == 0  # no packet since the reset: all zero
    line.stats.set_partitioned(True)
    for _ in range(3):
        line.send(b"b")
    assert line.receive_all(0.1) == []
    line.settle()
    snap = line.stats.snapshot()
    assert (snap.packets, snap.dropped_partition, snap.sent_packets) == (3, 3, 0)
    line.stats.set_partitioned(False)
    line.send(b"c")
    assert [d for _, d in line.receive_all(0.1)] == [b"c"]


def test_lateness_percentiles_come_from_the_histogram():
    hist = [0] * LATE_BUCKETS
    assert late_percentile(hist, 0.99) == 0.0
    hist[1] = 98  # 10-20 us late
    hist[150] = 2  # 1.5 ms late
    assert late_percentile(hist, 0.5) == pytest.approx(20e-6)
    assert late_percentile(hist, 0.99) == pytest.approx(1.51e-3)
    hist[LATE_BUCKETS - 1] = 1000
    assert late_percentile(hist, 0.99) > 0.1


def _policy_after(nice: int) -> tuple[str, int, int]:
    import os

    from tuner.sandbox.delayline import _outrank_owner

    os.setpriority(os.PRIO_PROCESS, 0, nice)
    done = _outrank_owner()
    return done, os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK, os.getpriority(os.PRIO_PROCESS, 0)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_the_line_outranks_a_normal_owner_but_not_the_neighbours_of_a_lowered_one():
    from tuner.netns import run_in_netns

    assert run_in_netns(None, _policy_after, 0)[:2] == ("fifo", os.SCHED_FIFO)
    assert run_in_netns(None, _policy_after, 15) == ("nice 5", os.SCHED_OTHER, 5)
