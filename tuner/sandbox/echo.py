"""Round trips as the kernel sees them: ICMP echo with kernel receive timestamps (root, raw socket).

Used inside a sandbox's client namespace right after its path is built, to measure what the delay line
adds to every round trip beyond the delay it was asked for (TUN crossings, its own wake-ups). The
server namespace's kernel answers the echo, so no program's wake-up is in the figure; the receive time
is the kernel's (``SO_TIMESTAMPNS``), so neither is this process's.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time

__all__ = ["echo_rtts"]

_ECHO_REQUEST = 8
_ECHO_REPLY = 0
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SCM_TIMESTAMPNS = _SO_TIMESTAMPNS
_PAYLOAD = b"tuner-echo-calib"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _request(ident: int, seq: int) -> bytes:
    head = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", _ECHO_REQUEST, 0, _checksum(head + _PAYLOAD), ident, seq) + _PAYLOAD


def echo_rtts(address: str, count: int, spacing: float, timeout: float) -> list[float]:
    """Send ``count`` echo requests to ``address``, ``spacing`` seconds apart, and return the round trip
    of each reply that came back within ``timeout`` seconds after the last request (seconds, sorted)."""
    ident = os.getpid() & 0xFFFF
    sent: dict[int, int] = {}
    rtts: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        deadline = None
        seq = 0
        next_send = time.monotonic()
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                sent[seq] = time.time_ns()
                sock.sendto(_request(ident, seq), (address, 0))
                seq += 1
                next_send = now + spacing
                if seq == count:
                    deadline = now + timeout
            if deadline is not None and (now >= deadline or len(rtts) == count):
                break
            wait = (next_send - now) if seq < count else (deadline or now) - now
            if not select.select([sock], [], [], max(0.0, wait))[0]:
                continue
            while True:
                try:
                    data, anc, _, _ = sock.recvmsg(256, socket.CMSG_SPACE(16))
                except BlockingIOError:
                    break
                rx = next(
                    (
                        struct.unpack("=qq", d[:16])
                        for level, kind, d in anc
                        if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS
                    ),
                    None,
                )
                header = (data[0] & 0x0F) * 4
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[header : header + 8])
                if kind != _ECHO_REPLY or rid != ident or rseq not in sent or rx is None:
                    continue
                rtts.append((rx[0] * 1_000_000_000 + rx[1] - sent.pop(rseq)) / 1e9)
    return sorted(rtts)
