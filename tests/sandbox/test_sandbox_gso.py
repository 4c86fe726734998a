"""Super-packets: their wire shape, carving them into runs of segments, and the line moving them."""

from __future__ import annotations

import socket
import struct

import pytest

from tuner.sandbox.gso import GSO_NONE, GSO_TCPV4, NEEDS_CSUM, VNET_HDR_LEN, carve, shape_of, vnet_header

SRC, DST = socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.2")
MSS = 1448
TCP_HDR = 32  # with the timestamp option
HEADERS = 20 + TCP_HDR


def _fold(x: int) -> int:
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return x


def _pseudo(l4_len: int) -> int:
    """The folded pseudo-header sum the kernel leaves in a CHECKSUM_PARTIAL TCP header."""
    words = struct.unpack("!4H", SRC + DST)
    return _fold(sum(words) + socket.IPPROTO_TCP + l4_len)


def _ip_ok(header: bytes) -> bool:
    return _fold(sum(struct.unpack("!10H", header))) == 0xFFFF


def super_packet(
    payload: bytes, *, seq: int = 1000, flags: int = 0x18 | 0x80 | 0x01, ident: int = 7
) -> bytes:
    l4 = TCP_HDR + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + l4, ident, 0x4000, 64, 6, 0, SRC, DST))
    ip[10:12] = struct.pack("!H", ~_fold(sum(struct.unpack("!10H", ip))) & 0xFFFF)
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 1, (TCP_HDR // 4) << 4, flags, 512, _pseudo(l4), 0)
    tcp += bytes(TCP_HDR - 20)
    vh = vnet_header(NEEDS_CSUM, GSO_TCPV4, HEADERS, MSS, 20, 16)
    return vh + bytes(ip) + tcp + payload


def test_the_shape_counts_segments_and_their_headers_on_the_wire():
    frame = super_packet(bytes(10 * MSS + 500))
    sh = shape_of(frame)
    assert (sh.segments, sh.headers, sh.gso_size) == (11, HEADERS, MSS)
    assert sh.wire_bytes == 10 * MSS + 500 + 11 * HEADERS
    plain = vnet_header(0, GSO_NONE, 0, 0, 0, 0) + bytes(60)
    assert shape_of(plain).segments == 1 and shape_of(plain).wire_bytes == 60


@pytest.mark.parametrize("first,count", [(0, 1), (0, 4), (3, 1), (3, 5), (10, 1), (6, 5)])
def test_a_carved_piece_is_the_segments_the_kernel_would_have_sent(first, count):
    payload = bytes(range(256)) * 60
    payload = payload[: 10 * MSS + 500]
    frame = super_packet(payload)
    sh = shape_of(frame)
    piece = carve(frame, sh, first, count)
    ip = piece[VNET_HDR_LEN : VNET_HDR_LEN + 20]
    tcp = piece[VNET_HDR_LEN + 20 : VNET_HDR_LEN + HEADERS]
    body = piece[VNET_HDR_LEN + HEADERS :]
    assert body == payload[first * MSS : (first + count) * MSS]
    assert struct.unpack("!H", ip[2:4])[0] == HEADERS + len(body)
    assert struct.unpack("!H", ip[4:6])[0] == 7 + first
    assert _ip_ok(ip)
    assert struct.unpack("!I", tcp[4:8])[0] == 1000 + first * MSS
    last = first + count == sh.segments
    assert bool(tcp[13] & 0x01) == last and bool(tcp[13] & 0x08) == last  # FIN, PSH: last segment only
    assert bool(tcp[13] & 0x80) == (first == 0)  # CWR: first segment only
    assert struct.unpack("!H", tcp[16:18])[0] == _pseudo(TCP_HDR + len(body))
    gso_type, gso_size = piece[1], struct.unpack("<H", piece[4:6])[0]
    assert (gso_type, gso_size) == ((GSO_TCPV4, MSS) if count > 1 else (GSO_NONE, 0))
    assert piece[0] == NEEDS_CSUM


def test_the_whole_packet_is_passed_as_it_is():
    frame = super_packet(bytes(5 * MSS))
    assert carve(frame, shape_of(frame), 0, 5) is frame


def test_the_line_drops_single_segments_out_of_super_packets(line_factory):
    """Per-segment loss: at 10% a 44-segment super-packet almost never passes whole; a line that
    dropped super-packets whole would deliver ~90% of them intact."""
    line = line_factory(loss=0.1, vnet=True, queue_packets=10_000)
    frame = super_packet(bytes(44 * MSS))
    sent = 60
    for _ in range(sent):
        line.send(frame)
    got = line.receive_all()
    line.settle()
    snap = line.stats.snapshot()
    assert snap.packets == 44 * sent and snap.reads == sent
    delivered = [shape_of(f).segments for _, f in got]
    assert sum(delivered) == snap.sent_packets == 44 * sent - snap.dropped_loss
    assert 0.05 < snap.dropped_loss / snap.packets < 0.15
    assert sum(1 for n in delivered if n == 44) < sent // 4
    assert snap.sent_bytes == sum(
        len(f) - VNET_HDR_LEN + (shape_of(f).segments - 1) * HEADERS for _, f in got
    )


def test_a_full_queue_takes_the_segments_that_fit(line_factory):
    line = line_factory(rate_bps=8e6, delay=0.0, queue_packets=30, vnet=True)  # 1.5 ms per segment
    frame = super_packet(bytes(44 * MSS))
    line.send(frame)
    got = line.receive_all(quiet=0.3)
    line.settle()
    snap = line.stats.snapshot()
    assert (snap.packets, snap.sent_packets, snap.dropped_queue) == (44, 30, 14)
    body = b"".join(f[VNET_HDR_LEN + HEADERS :] for _, f in got)
    assert len(body) == 30 * MSS


def test_every_segment_is_accounted_for_when_the_queue_fills_inside_a_piece(line_factory):
    """At 1 Gbit/s a piece is 16 segments: the queue (20) fills in the second piece of a 44-segment
    super-packet; what does not fit is dropped and counted, none is lost silently."""
    line = line_factory(rate_bps=1e9, delay=0.0, queue_packets=20, vnet=True)
    line.send(super_packet(bytes(44 * MSS)))
    got = line.receive_all(quiet=0.3)
    line.settle()
    snap = line.stats.snapshot()
    assert (snap.packets, snap.sent_packets, snap.dropped_queue) == (44, 20, 24)
    assert sum(shape_of(f).segments for _, f in got) == 20
