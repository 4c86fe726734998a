"""GSO super-packets as a TUN device with ``IFF_VNET_HDR`` hands them over: count and carve them.

A read from such a device starts with a 10-byte ``virtio_net_hdr`` (flags, gso_type, hdr_len,
gso_size, csum_start, csum_offset; little-endian on the machines we run on), then one IP packet that may
stand for many TCP segments of ``gso_size`` payload bytes each. The kernel segments it again where it
must; the delay line only needs to know

- how many segments (packets on the wire) the super-packet is, and how many bytes they take on the wire
  (``segments x headers + payload``), for the rate and the queue;
- how to carve a run of consecutive segments out of it, so loss stays per segment and a full queue drops
  only the segments that do not fit: :func:`carve`.

Pure functions on bytes; no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "GSO_ECN",
    "GSO_NONE",
    "GSO_TCPV4",
    "GSO_TCPV6",
    "NEEDS_CSUM",
    "VNET_HDR_LEN",
    "Shape",
    "carve",
    "shape_of",
    "vnet_header",
]

VNET_HDR_LEN = 10
NEEDS_CSUM = 1
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_TCPV6 = 4
GSO_ECN = 0x80

_VNET = struct.Struct("<BBHHHH")
_TCP_FIN = 0x01
_TCP_PSH = 0x08
_TCP_CWR = 0x80


@dataclass(frozen=True)
class Shape:
    """What one read from the device stands for on the wire."""

    segments: int  # packets on the wire
    wire_bytes: int  # IP bytes on the wire: payload + segments x headers
    headers: int  # IP + TCP header bytes of each segment (0 for a plain packet)
    gso_size: int  # payload bytes per segment (0 for a plain packet)


def vnet_header(
    flags: int, gso_type: int, hdr_len: int, gso_size: int, csum_start: int, csum_offset: int
) -> bytes:
    return _VNET.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def shape_of(frame: bytes) -> Shape:
    """The wire shape of ``frame`` (virtio header + IP packet)."""
    ip_len = len(frame) - VNET_HDR_LEN
    gso_type = frame[1] & ~GSO_ECN
    if gso_type not in (GSO_TCPV4, GSO_TCPV6):
        return Shape(1, ip_len, 0, 0)
    gso_size = frame[4] | (frame[5] << 8)
    ip0 = VNET_HDR_LEN
    l3 = (frame[ip0] & 0x0F) * 4 if frame[ip0] >> 4 == 4 else 40
    headers = l3 + (frame[ip0 + l3 + 12] >> 4) * 4
    payload = ip_len - headers
    if gso_size <= 0 or payload <= gso_size:
        return Shape(1, ip_len, headers, gso_size)
    segments = -(-payload // gso_size)
    return Shape(segments, payload + segments * headers, headers, gso_size)


def _fold(x: int) -> int:
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return x


def _ip4_checksum(header: bytearray) -> int:
    header[10:12] = b"\0\0"
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    return ~_fold(total) & 0xFFFF


def carve(frame: bytes, shape: Shape, first: int, count: int) -> bytes:
    """Segments ``first`` .. ``first + count - 1`` of the super-packet ``frame`` as a frame of their own.

    The result is a valid frame for the device: one segment becomes a plain packet (checksum still left
    to the kernel), several stay a smaller super-packet. IP total/payload length, IPv4 id and header
    checksum, TCP sequence number, the flags that belong to the first (CWR) or last (FIN, PSH) segment
    only, and the partial TCP checksum (which covers the length) are set as the kernel's own
    segmentation sets them.
    """
    if first == 0 and count >= shape.segments:
        return frame
    ip0 = VNET_HDR_LEN
    h = shape.headers
    gso = shape.gso_size
    body = ip0 + h
    start = body + first * gso
    end = min(len(frame), start + count * gso)
    payload_len = end - start
    flags, gso_type, hdr_len, _, csum_start, csum_offset = _VNET.unpack_from(frame)
    if count > 1:
        vh = _VNET.pack(flags, gso_type, hdr_len, gso, csum_start, csum_offset)
    else:
        vh = _VNET.pack(flags, GSO_NONE, 0, 0, csum_start, csum_offset)
    hdr = bytearray(frame[ip0:body])
    v4 = hdr[0] >> 4 == 4
    l3 = (hdr[0] & 0x0F) * 4 if v4 else 40
    old_l4_len = len(frame) - body + (h - l3)
    new_l4_len = payload_len + (h - l3)
    if v4:
        struct.pack_into("!H", hdr, 2, h + payload_len)
        ident = struct.unpack_from("!H", hdr, 4)[0]
        struct.pack_into("!H", hdr, 4, (ident + first) & 0xFFFF)
        struct.pack_into("!H", hdr, 10, _ip4_checksum(hdr[:l3]))
    else:
        struct.pack_into("!H", hdr, 4, new_l4_len)
    seq = struct.unpack_from("!I", hdr, l3 + 4)[0]
    struct.pack_into("!I", hdr, l3 + 4, (seq + first * gso) & 0xFFFFFFFF)
    tflags = hdr[l3 + 13]
    if first > 0:
        tflags &= ~_TCP_CWR
    if first + count < shape.segments:
        tflags &= ~(_TCP_FIN | _TCP_PSH)
    hdr[l3 + 13] = tflags
    if flags & NEEDS_CSUM:
        # the field holds the folded pseudo-header sum, which includes the TCP length: swap the length
        check = struct.unpack_from("!H", hdr, l3 + 16)[0]
        check = _fold(check + (~old_l4_len & 0xFFFF) + new_l4_len)
        struct.pack_into("!H", hdr, l3 + 16, check)
    return b"".join((vh, hdr, frame[start:end]))
