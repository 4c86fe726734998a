"""The emulated path does what the NetworkPath says: RTT, the window effect, loss (and its pause),
partition."""

from __future__ import annotations

import socket
import time

import pytest
from sandbox_helpers import PORT, SERVER, SO_RCVBUFFORCE, connect, echo, listener, ping_pong

from tuner.sandbox import Sandbox, Side
from tuner.workload import NetworkPath

pytestmark = pytest.mark.root


@pytest.fixture(params=["tun", "tun-plain", "netem"])
def backend(request, monkeypatch) -> str:
    """Every path test runs on each emulator: the delay line moving super-packets, the delay line
    reading one packet at a time, and netem where the kernel has it."""
    from tuner.sandbox.links import OFFLOAD_ENV
    from tuner.sandbox.sandbox import netem_available

    if request.param == "netem" and not netem_available():
        pytest.skip("this kernel has no sch_netem")
    monkeypatch.setenv(OFFLOAD_ENV, "0" if request.param == "tun-plain" else "1")
    return request.param.split("-")[0]


def test_a_50ms_path_measures_50ms_of_tcp_ping_pong(backend):
    with Sandbox(NetworkPath(rtt=0.05), backend=backend) as sb:
        sb.spawn(Side.SERVER, echo)
        rtts = sb.run(Side.CLIENT, ping_pong, 12)
        health = sb.health()
    # the fastest exchange is the path's: a busy machine only adds wake-up delays on top (one-sided)
    fastest = min(rtts[2:])
    assert 0.0495 < fastest < 0.053, f"fastest RTT {fastest * 1e3:.2f} ms"
    assert health.packets > 20 and health.dropped_loss == 0 and health.tun_drops == 0
    assert 0.0 <= health.steal_share <= 1.0  # a share of the whole machine's CPU time


def _sink(rcvbuf: int | None, seconds: float) -> float:
    """Bits per second received over the second half of ``seconds``."""
    conn, _ = listener(rcvbuf).accept()
    buf = bytearray(1 << 18)
    start = time.monotonic()
    half = start + seconds / 2
    counted = 0
    t_half = None
    while n := conn.recv_into(buf):
        now = time.monotonic()
        if now >= half:
            if t_half is None:
                t_half = now
            else:
                counted += n
    return counted * 8 / (time.monotonic() - t_half)


def _source(seconds: float) -> None:
    s = connect()
    data = b"\0" * (1 << 16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(data)
    s.close()


def _bulk(server_sysctls: dict, rcvbuf: int | None, backend: str, seconds: float = 1.6) -> float:
    with Sandbox(NetworkPath(rtt=0.05, rate_bps=100e6), server_sysctls=server_sysctls, backend=backend) as sb:
        sink = sb.spawn(Side.SERVER, _sink, rcvbuf, seconds)
        sb.run(Side.CLIENT, _source, seconds)
        return sink.result(10)


def test_a_1mib_window_moves_at_least_5x_more_than_a_64kib_receive_buffer_across_50ms(backend):
    wide = _bulk({"net.ipv4.tcp_rmem": (4096, 131072, 1 << 20)}, None, backend)
    narrow = _bulk({}, 64 * 1024, backend)
    assert wide >= 5 * narrow, (
        f"1 MiB window {wide / 1e6:.1f} Mbit/s vs 64 KiB buffer {narrow / 1e6:.1f} Mbit/s"
    )


def _udp_sink(seconds: float) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
    s.bind((SERVER, PORT))
    s.settimeout(0.5)
    got = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s.recv(2048)
            got += 1
        except TimeoutError:
            break
    return got


def _udp_source(count: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(count):
        s.sendto(b"u" * 200, (SERVER, PORT))
        if i % 50 == 49:
            time.sleep(0.001)  # stay well inside the rate cap: only the emulated loss may drop


def test_5_percent_loss_shows_about_5_percent_dropped_in_the_links_own_counters(backend):
    count = 4000
    with Sandbox(NetworkPath(rtt=0.002, loss=0.05, rate_bps=100e6), backend=backend) as sb:
        sink = sb.spawn(Side.SERVER, _udp_sink, 10)
        time.sleep(0.05)
        sb.run(Side.CLIENT, _udp_source, count)
        received = sink.result(15)
        health = sb.health()
    assert health.packets == count
    assert 0.03 < health.dropped_loss / health.packets < 0.07, health
    assert received == count - health.dropped_loss - health.dropped_queue
    assert health.tun_drops == 0


def test_tcp_segments_are_lost_one_by_one_even_when_they_travel_as_super_packets(backend):
    """1% loss on a bulk stream: about 1% of the packets on the wire are dropped (per segment, not
    whole super-packets), and the delay line that takes offloads reads far fewer frames than packets."""
    with Sandbox(
        NetworkPath(rtt=0.01, loss=0.01, rate_bps=400e6), backend=backend
    ) as sb:  # super-packets above 150M
        sink = sb.spawn(Side.SERVER, _sink, None, 2.0)
        sb.reset_health()
        sb.run(Side.CLIENT, _source, 2.0)
        sink.result(10)
        health = sb.health()
        offload = getattr(sb._link, "offload", False)
    assert health.packets > 2000, health
    assert 0.004 < health.dropped_loss / health.packets < 0.02, health
    if offload:
        assert health.frames < health.packets / 2, health


def _digest_sink() -> tuple[int, str]:
    import hashlib

    conn, _ = listener().accept()
    h = hashlib.sha256()
    total = 0
    while data := conn.recv(1 << 16):
        h.update(data)
        total += len(data)
    return total, h.hexdigest()


def _random_source(size: int) -> str:
    import hashlib
    import random

    data = random.Random(11).randbytes(size)
    s = connect()
    s.sendall(data)
    s.close()
    return hashlib.sha256(data).hexdigest()


def test_every_byte_arrives_intact_across_a_lossy_path(backend):
    """Carved super-packets (lost segments cut out, checksums left to the kernel) still make a
    byte-exact stream: the receiver's digest equals the sender's."""
    size = 3 << 20
    with Sandbox(NetworkPath(rtt=0.01, loss=0.02, rate_bps=200e6), backend=backend) as sb:
        sink = sb.spawn(Side.SERVER, _digest_sink)
        sent = sb.run(Side.CLIENT, _random_source, size)
        got, digest = sink.result(60)
        health = sb.health()
    assert got == size and digest == sent
    assert health.dropped_loss > 0


def _partition_server() -> bytes:
    conn, _ = listener().accept()
    conn.settimeout(10)
    data = b""
    while len(data) < 5:
        data += conn.recv(5)
    return data


def _talk(wait: float) -> str:
    s = connect()
    time.sleep(wait)  # the parent partitions the path meanwhile
    s.sendall(b"hello")  # no error: a dead peer is silent
    time.sleep(0.6)
    s.close()
    return "sent"


def test_a_paused_loss_drops_nothing_until_it_resumes(backend):
    count = 1000
    with Sandbox(NetworkPath(rtt=0.002, loss=0.2, rate_bps=100e6), backend=backend) as sb:
        sb.set_lossless(True)
        time.sleep(0.05)  # the line reads the switch between its batches
        sink = sb.spawn(Side.SERVER, _udp_sink, 10)
        time.sleep(0.05)
        sb.run(Side.CLIENT, _udp_source, count)
        paused = sink.result(15), sb.health()
        sb.set_lossless(False)
        time.sleep(0.05)
        sb.reset_health()
        sink = sb.spawn(Side.SERVER, _udp_sink, 10)
        time.sleep(0.05)
        sb.run(Side.CLIENT, _udp_source, count)
        resumed = sink.result(15), sb.health()
    # (a busy machine can overflow the queue: those drops are the queue's, not the loss's)
    assert paused[1].dropped_loss == 0 and paused[0] == count - paused[1].dropped_queue, paused[1]
    assert 0.1 < resumed[1].dropped_loss / resumed[1].packets < 0.3, resumed[1]
    assert resumed[0] == count - resumed[1].dropped_loss - resumed[1].dropped_queue


@pytest.mark.parametrize("backend", ["tun", "none"])
def test_a_partition_drops_everything_silently_until_it_heals(backend):
    path = NetworkPath(rtt=0.01) if backend == "tun" else None
    with Sandbox(path, backend=backend) as sb:
        server = sb.spawn(Side.SERVER, _partition_server)
        client = sb.spawn(Side.CLIENT, _talk, 0.3)
        time.sleep(0.15)
        sb.set_partitioned(True)
        time.sleep(0.6)
        assert server.alive(), "data crossed a partitioned path"
        sb.set_partitioned(False)
        assert server.result(10) == b"hello"
        assert client.result(5) == "sent"
        if backend == "tun":
            assert sb.health().dropped_partition > 0


@pytest.mark.parametrize("rate, offload", [(100e6, False), (400e6, True)])
def test_the_line_reads_single_packets_below_150_mbit_and_super_packets_above(monkeypatch, rate, offload):
    """Below 150 Mbit/s one packet per read keeps finer time (and has the CPU); above, super-packets."""
    monkeypatch.delenv("TUNER_TUN_OFFLOAD", raising=False)
    with Sandbox(NetworkPath(rtt=0.002, rate_bps=rate), backend="tun") as sb:
        assert sb._link.offload is offload


def test_the_delay_line_takes_its_own_overhead_off_the_delay_but_no_more():
    """The line measures what it adds to a round trip (TUN crossings, wake-ups) when the path is built
    and takes it off its delay, never more than it measured: kernel-timestamped echoes then come back no
    sooner than the RTT asked for less that overhead, and the overhead is in the path's health. (How
    close the RTT then is to the one asked for is a bench figure: bench/sandbox_path.py.)"""
    from tuner.sandbox.echo import echo_rtts
    from tuner.sandbox.layout import ADDRESSES

    with Sandbox(NetworkPath(rtt=0.004), backend="tun") as sb:
        rtts = sb.run(Side.CLIENT, echo_rtts, ADDRESSES[Side.SERVER], 20, 0.002, 2.0)
        health = sb.health()
    assert len(rtts) >= 15, f"{len(rtts)} of 20 echoes came back over a path without loss"
    assert 0.0 < health.overhead_ms < 4.0
    floor = 0.004 - health.overhead_ms / 1e3
    assert rtts[0] >= floor, f"fastest echo {rtts[0] * 1e3:.3f} ms < 4 ms less the overhead taken off"
