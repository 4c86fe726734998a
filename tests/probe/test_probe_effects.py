"""The effects the probes exist to show, measured in real sandboxes (large, robust effects only)."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tuner.knobs import KernelFacts
from tuner.probe import keepalive, rr, run_probe
from tuner.probe.side_by_side import Request, SideBySide
from tuner.scoring import KeepaliveObjective
from tuner.workload import NetworkPath, Workload, WorkloadKind, WritePattern

pytestmark = pytest.mark.root

PLAIN = NetworkPath()
KiB, MiB = 1024, 1024 * 1024


def _measured(w, path, assignment, *, tries=3, **kw):
    """``run_probe`` again (at most ``tries`` runs) while the load generator or the path of a busy host was
    the bottleneck: the probe refuses such runs, and the effect is asserted on a run it accepts."""
    for _ in range(tries):
        m = run_probe(w, path, assignment, **kw)
        if m.usable or m.failed:
            return m
    return m


def test_rr_split_writes_are_10x_faster_with_tcp_nodelay(leaves_nothing_behind):
    w = Workload(WorkloadKind.RR, write_pattern=WritePattern.SPLIT)
    nagle = run_probe(w, PLAIN, {"TCP_NODELAY": False}, repeats=1, duration=0.5)
    nodelay = run_probe(w, PLAIN, {"TCP_NODELAY": True}, repeats=1, duration=0.5)
    assert not nagle.failed and not nodelay.failed, (nagle.error, nodelay.error)
    assert nagle.value("latency_p50_ms") > 20  # Nagle + delayed ACK: tens of ms
    assert nodelay.value("latency_p50_ms") * 10 <= nagle.value("latency_p50_ms")
    assert nodelay.value("tps") > 10 * nagle.value("tps")


def test_burst_against_a_small_backlog_overflows_and_waits_for_syn_retransmits(leaves_nothing_behind):
    w = Workload(WorkloadKind.BURST, burst_connections=512, burst_threads=256, accept_rate=2000)
    small = run_probe(w, PLAIN, {"backlog": 8}, repeats=1, duration=0.5)
    large = run_probe(w, PLAIN, {"backlog": 4096, "net.core.somaxconn": 4096}, repeats=1, duration=0.5)
    assert not small.failed and not large.failed, (small.error, large.error)
    # an overflowed SYN is retransmitted after 1 s: the small backlog's p99 waits for it (measured ~1045
    # ms), the large one's does not (8-14 ms idle, 112 ms beside two busy processes, 215 ms once in a
    # full test run: a busy machine's scheduling, well short of a retransmitted SYN)
    assert small.value("connect_p99_ms") > 900
    assert large.value("connect_p99_ms") < 600
    assert small.value("listen_overflows") > 0
    assert small.counters["server"].get("TcpExt.ListenOverflows", 0) > 0
    assert large.value("listen_overflows") == 0
    assert large.counters["server"].get("TcpExt.ListenOverflows", 0) == 0


def test_burst_over_a_path_with_delay_needs_a_syn_queue_or_syn_cookies(leaves_nothing_behind):
    # the SYN-queue dimensions of the burst space: over 20 ms, 2000 handshakes are half-open at once.
    # Without cookies a short SYN queue drops SYNs (retransmitted after 1 s); a long one or cookies do not.
    # (On a path without delay the SYN queue drains in microseconds and neither knob can matter.)
    w = Workload(WorkloadKind.BURST, burst_connections=2000, burst_threads=256, accept_rate=2000)
    path = NetworkPath(rtt=0.02, rate_bps=1e9)
    base = {"backlog": 4096, "net.core.somaxconn": 4096}
    short = run_probe(
        w,
        path,
        {**base, "net.ipv4.tcp_syncookies": 0, "net.ipv4.tcp_max_syn_backlog": 128},
        repeats=1,
        duration=0.5,
    )
    long = run_probe(
        w,
        path,
        {**base, "net.ipv4.tcp_syncookies": 0, "net.ipv4.tcp_max_syn_backlog": 16384},
        repeats=1,
        duration=0.5,
    )
    cookies = run_probe(
        w,
        path,
        {**base, "net.ipv4.tcp_syncookies": 1, "net.ipv4.tcp_max_syn_backlog": 128},
        repeats=1,
        duration=0.5,
    )
    assert not short.failed and not long.failed and not cookies.failed, (
        short.error,
        long.error,
        cookies.error,
    )
    assert short.value("listen_drops") > 0 and short.value("connect_p99_ms") > 900  # a SYN retransmit
    for fixed in (long, cookies):
        assert fixed.value("listen_drops") == 0
        # no SYN waits for its 1 s retransmit (measured 5-10x faster idle, 3.6x beside two busy processes)
        assert fixed.value("connect_p99_ms") * 2 <= short.value("connect_p99_ms")


def test_udp_into_a_slow_reader_delivers_more_with_a_large_receive_buffer(leaves_nothing_behind):
    # bursts of 500 datagrams at 10k/s on average into a reader that serves 20k/s: only the buffer
    # decides whether a burst fits. The small buffer comes from an emulated host default.
    w = Workload(WorkloadKind.UDP, udp_rate=10000, udp_burst=500, service_rate=20000)
    small = _measured(w, PLAIN, {"net.core.rmem_default": 32 * KiB}, repeats=1, duration=0.5)
    large = _measured(w, PLAIN, {"SO_RCVBUF": 4 * MiB, "net.core.rmem_max": 8 * MiB}, repeats=1, duration=0.5)
    assert not small.failed and not large.failed, (small.error, large.error)
    assert large.value("delivered_fraction") >= 0.9
    assert large.value("delivered_fraction") >= small.value("delivered_fraction") + 0.4
    assert small.counters["server"].get("Udp.RcvbufErrors", 0) > 0
    assert large.counters["server"].get("Udp.RcvbufErrors", 0) == 0


def test_udp_overload_measures_the_same_steady_state_at_half_a_second_and_five_seconds(leaves_nothing_behind):
    # the case at rates a busy 2-core machine sustains (beside two CPU burners a 4k/s reader
    # served 3.3-3.5k/s): 2.5x the reader's 2k/s offered behind a 4 MiB buffer (the issue's own figures,
    # 50k/s into 20k/s behind 64 MiB, are in its closing note).
    # A buffer cannot fix an overload; measured before it filled, a short run showed 100% delivered
    w = Workload(WorkloadKind.UDP, udp_rate=5000, udp_burst=64, service_rate=2000)
    big = {"SO_RCVBUF": 4 * MiB, "net.core.rmem_max": 4 * MiB}
    short = _measured(w, PLAIN, big, repeats=1, duration=0.5)
    long = _measured(w, PLAIN, big, repeats=1, duration=5.0)
    assert short.usable and long.usable, (
        short.error or short.invalid_reason,
        long.error or long.invalid_reason,
    )
    a, b = short.value("delivered_fraction"), long.value("delivered_fraction")
    assert abs(a - b) <= 0.1 * max(a, b), (a, b)
    assert a < 0.6 and b < 0.6  # about 4k/10k, not the 100% of an unfilled buffer
    for m in (short, long):
        assert m.value("reader_latency_ms") > 500  # the full buffer is a standing queue of seconds
        assert any("buffers cannot fix this" in n for n in m.notes), m.notes


def test_udp_bursts_a_buffer_absorbs_are_delivered_at_any_duration(leaves_nothing_behind):
    # bursts of 200 at 2k/s into a reader of 4k/s (the default workload's shape at rates whose bursts a
    # busy machine's sender still sends as bursts)
    w = Workload(WorkloadKind.UDP, udp_rate=2000, udp_burst=200, service_rate=4000)
    fits = {"SO_RCVBUF": 4 * MiB, "net.core.rmem_max": 8 * MiB}
    short = _measured(w, PLAIN, fits, repeats=1, duration=0.5)
    long = _measured(w, PLAIN, fits, repeats=1, duration=3.0)
    assert short.usable and long.usable, (
        short.error or short.invalid_reason,
        long.error or long.invalid_reason,
    )
    for m in (short, long):
        assert m.value("delivered_fraction") >= 0.95
        assert m.value("reader_latency_ms") < 100  # a burst waits, no standing queue
        assert not any("buffers cannot fix this" in n for n in m.notes)


def test_bulk_over_a_long_fat_path_is_5x_faster_with_large_buffers(leaves_nothing_behind):
    w = Workload(WorkloadKind.BULK)
    path = NetworkPath(rtt=0.05, rate_bps=100e6)
    small = run_probe(w, path, {"SO_RCVBUF": 64 * KiB}, repeats=1, duration=0.6)
    large = run_probe(
        w,
        path,
        {"net.ipv4.tcp_rmem": (4096, 131072, 32 * MiB), "net.ipv4.tcp_wmem": (4096, 65536, 32 * MiB)},
        repeats=1,
        duration=0.6,
    )
    assert not small.failed and not large.failed, (small.error, large.error)
    assert small.backend == large.backend != "none"
    assert large.value("goodput_mbps") >= 5 * small.value("goodput_mbps")
    assert small.value("rwnd_limited_pct") > large.value("rwnd_limited_pct")


def test_bulk_upload_over_a_long_fat_path_is_5x_faster_with_a_larger_send_buffer_limit(leaves_nothing_behind):
    # the tcp_wmem dimension of the bulk space: the sender's autotuned buffer is capped by its max
    w = Workload(WorkloadKind.BULK)
    path = NetworkPath(rtt=0.05, rate_bps=100e6)
    rmem = (4096, 131072, 32 * MiB)
    small = run_probe(
        w,
        path,
        {"net.ipv4.tcp_wmem": (4096, 16384, 64 * KiB), "net.ipv4.tcp_rmem": rmem},
        repeats=1,
        duration=0.6,
    )
    large = run_probe(
        w,
        path,
        {"net.ipv4.tcp_wmem": (4096, 16384, 32 * MiB), "net.ipv4.tcp_rmem": rmem},
        repeats=1,
        duration=0.6,
    )
    assert not small.failed and not large.failed, (small.error, large.error)
    assert large.value("goodput_mbps") >= 5 * small.value("goodput_mbps")
    assert small.value("sndbuf_limited_pct") > 20 > large.value("sndbuf_limited_pct")


@pytest.mark.skipif(
    not {"reno", "bbr"} <= KernelFacts.read().congestion_allowed,
    reason="the host does not allow reno and bbr in namespaces",
)
def test_bulk_over_a_lossy_path_is_5x_faster_with_bbr_than_with_reno(leaves_nothing_behind):
    # the congestion-control dimension of the bulk space (reno and bbr: the algorithms a namespace may
    # select on the development machines; cubic behaves like reno here, see DESIGN.md)
    w = Workload(WorkloadKind.BULK)
    path = NetworkPath(rtt=0.05, rate_bps=100e6, loss=0.01)
    rmem = (4096, 131072, 32 * MiB)
    reno = run_probe(
        w,
        path,
        {"net.ipv4.tcp_congestion_control": "reno", "net.ipv4.tcp_rmem": rmem},
        repeats=1,
        duration=0.6,
    )
    bbr = run_probe(
        w,
        path,
        {"net.ipv4.tcp_congestion_control": "bbr", "net.ipv4.tcp_rmem": rmem},
        repeats=1,
        duration=0.6,
    )
    assert not reno.failed and not bbr.failed, (reno.error, bbr.error)
    # measured 9-20x (reno 5-11 Mbit/s, bbr ~94 Mbit/s); 5x leaves room for a busy machine's slow start
    assert bbr.value("goodput_mbps") >= 5 * reno.value("goodput_mbps")


def test_keepalive_notices_a_dead_peer_only_when_on_and_kills_healthy_connections_only_when_eager(
    leaves_nothing_behind,
):
    # Two keepalive comparisons, each measured side by side as a search measures them (every arm in its
    # own sandbox) and each waiting out seconds of timers with the machine idle, so the two pools (one
    # per path) measure at once: the wall time is the longer one's, the dead-peer window of 18 s.
    # 1. plain path: 1 s / 1 s / 3 probes notices a dead peer within 5 s, no keepalive never does.
    # 2. lossy path: 64 connections, a probe a second each for ~6 s, 2% loss each way (about 4% of probes
    #    go unanswered): giving up after one lost probe kills healthy connections, after five does not.
    timers = {"SO_KEEPALIVE": True, "TCP_KEEPIDLE": 1, "TCP_KEEPINTVL": 1}
    with (
        SideBySide(
            Workload(WorkloadKind.KEEPALIVE, idle_connections=4), PLAIN, 0.6, None, workers=2
        ) as plain,
        SideBySide(
            Workload(WorkloadKind.KEEPALIVE, idle_connections=64),
            NetworkPath(loss=0.02),
            0.5,
            None,
            workers=2,
        ) as lossy,
        ThreadPoolExecutor(2) as threads,
    ):
        dead_peer = threads.submit(plain.measure, [Request({**timers, "TCP_KEEPCNT": 3}, 1), Request({}, 1)])
        risk = threads.submit(
            lossy.measure,
            [Request({**timers, "TCP_KEEPCNT": 1}, 1), Request({**timers, "TCP_KEEPCNT": 5}, 1)],
        )
        on, off = dead_peer.result()
        eager, patient = risk.result()

    assert on.usable and off.usable, (on.error or on.invalid_reason, off.error or off.invalid_reason)
    assert on.value("detected_fraction") == 1.0
    assert on.value("detect_s") <= 5.5
    assert on.value("false_kills") == 0  # no loss: nothing to give up on
    assert on.computed["keepalive_packets_per_conn_hour"] == 3600  # computed, so no interval
    assert "keepalive_packets_per_conn_hour" not in on.metrics
    assert on.counters["server"].get("TcpExt.TCPKeepAlive", 0) >= 3 * 4  # three probes per connection
    assert off.value("detected_fraction") == 0.0
    assert off.value("detect_s") == pytest.approx(keepalive.WINDOW_MIN)  # the window: a lower bound
    assert any("lower bound" in n for n in off.notes)
    assert off.computed["keepalive_packets_per_conn_hour"] == 0

    # (a busy host may make the delay line late by a millisecond, which invalidates a timing measurement
    # but not a count of connections killed over seconds: only a failed run is refused here)
    assert not eager.failed and not patient.failed, (eager.error, patient.error)
    assert eager.value("false_kills") > 0
    assert patient.value("false_kills") == 0  # five lost in a row: about 1e-7 per probe
    assert patient.value("healthy_keepalive_probes") >= 64  # the exposure: at least a probe per connection
    assert patient.value("detected_fraction") == 1.0
    score = KeepaliveObjective().score(eager)
    assert not score.feasible and "healthy connection" in score.reason
    assert KeepaliveObjective().score(patient).feasible


def _crashing_serve(*args, **kwargs):
    """The real echo server, killed by SIGKILL shortly after it starts serving."""
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGKILL)).start()
    return _real_serve(*args, **kwargs)


_real_serve = rr.serve


def test_a_server_that_crashes_gives_a_failed_measurement_and_leaves_nothing(
    monkeypatch, leaves_nothing_behind
):
    monkeypatch.setattr(rr, "serve", _crashing_serve)
    w = Workload(WorkloadKind.RR, write_pattern=WritePattern.SPLIT)
    m = run_probe(w, PLAIN, {"TCP_NODELAY": True}, repeats=2, duration=1.0)
    assert m.failed and not m.valid
    assert "server crashed" in m.error and "signal" in m.error
    assert m.repeats == 0


def _serve_raises(*args, **kwargs):
    raise RuntimeError("cannot serve: disk on fire")


def test_a_server_that_raises_before_listening_reports_its_own_error(monkeypatch, leaves_nothing_behind):
    monkeypatch.setattr(rr, "serve", _serve_raises)
    m = run_probe(Workload(WorkloadKind.RR), PLAIN, {}, repeats=1, duration=0.2)
    assert m.failed
    assert "server crashed" in m.error and "disk on fire" in m.error


def test_memory_counts_the_pending_response_per_connection_and_a_throughput_floor(leaves_nothing_behind):
    w = Workload(WorkloadKind.MEMORY, idle_connections=50, response_size=256 * KiB)
    small = run_probe(w, PLAIN, {"SO_RCVBUF": 16 * KiB, "SO_SNDBUF": 16 * KiB}, repeats=1, duration=0.3)
    large = run_probe(w, PLAIN, {}, repeats=1, duration=0.3)
    assert not small.failed and not large.failed, (small.error, large.error)
    # a quarter MiB waits on each connection: the default buffers hold most of it, 16 KiB ones little
    assert large.value("bytes_per_conn") > 100 * KiB
    assert large.value("bytes_per_conn") >= 3 * small.value("bytes_per_conn")
    assert small.value("goodput_mbps") > 0 and large.value("goodput_mbps") > 0


def test_an_invalid_assignment_is_a_failed_measurement_not_an_exception():
    m = run_probe(Workload(WorkloadKind.RR), PLAIN, {"SO_RCVBUF": "lots"}, repeats=1, duration=0.2)
    assert m.failed and "SO_RCVBUF" in m.error


def test_a_host_knob_that_cannot_be_emulated_makes_the_measurement_invalid(leaves_nothing_behind):
    m = run_probe(
        Workload(WorkloadKind.RR), PLAIN, {"net.core.netdev_max_backlog": 5000}, repeats=1, duration=0.2
    )
    assert not m.failed and not m.valid
    assert "net.core.netdev_max_backlog" in m.invalid_reason


def _somaxconn() -> int:
    from tuner.knobs import SysctlTree, get_knob

    return SysctlTree().read(get_knob("net.core.somaxconn"))


def test_in_the_callers_sandbox_sysctls_go_to_both_sides_and_are_put_back(leaves_nothing_behind):
    from tuner.sandbox import Sandbox, Side

    w = Workload(WorkloadKind.BURST, burst_connections=64, burst_threads=64, accept_rate=100)
    with Sandbox() as sb:
        before = {side: sb.run(side, _somaxconn) for side in Side}
        calls = []
        real_apply = sb.apply_sysctls
        sb.apply_sysctls = lambda side, values: (calls.append((side, dict(values))), real_apply(side, values))
        m = run_probe(w, PLAIN, {"net.core.somaxconn": 8}, repeats=1, duration=0.2, sandbox=sb)
        assert not m.failed, m.error
        assert m.value("listen_overflows") > 0  # the default backlog 128 was capped at 8
        assert {side for side, values in calls if values == {"net.core.somaxconn": 8}} == set(Side)
        assert {side: sb.run(side, _somaxconn) for side in Side} == before
        again = run_probe(w, PLAIN, {}, repeats=1, duration=0.2, sandbox=sb)  # the sandbox is still usable
        assert not again.failed and again.value("listen_overflows") == 0
