"""``struct tcp_info`` and socket memory of the probe's own sockets, read with getsockopt.

The probe owns its sockets, so it reads them directly (``TCP_INFO``, ``SO_MEMINFO``) instead of going
through sock_diag. Offsets follow ``include/uapi/linux/tcp.h``; fields a kernel does not fill (a short
answer) read as 0.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = ["SockMem", "TcpInfo", "sock_meminfo", "tcp_info"]

SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)
_TCP_INFO_LEN = 232

# name -> (offset, struct format)
_FIELDS = {
    "state": (0, "B"),
    "probes": (3, "B"),
    "rto_us": (8, "I"),
    "snd_mss": (16, "I"),
    "unacked": (24, "I"),
    "lost": (32, "I"),
    "retrans": (36, "I"),
    "rtt_us": (68, "I"),
    "rttvar_us": (72, "I"),
    "snd_cwnd": (80, "I"),
    "total_retrans": (100, "I"),
    "bytes_acked": (120, "Q"),
    "bytes_received": (128, "Q"),
    "segs_out": (136, "I"),
    "segs_in": (140, "I"),
    "delivery_rate": (160, "Q"),
    "busy_time_us": (168, "Q"),
    "rwnd_limited_us": (176, "Q"),
    "sndbuf_limited_us": (184, "Q"),
    "delivered": (192, "I"),
    "bytes_sent": (200, "Q"),
    "bytes_retrans": (208, "Q"),
    "snd_wnd": (228, "I"),
}


@dataclass(frozen=True)
class TcpInfo:
    state: int = 0
    probes: int = 0
    rto_us: int = 0
    snd_mss: int = 0
    unacked: int = 0
    lost: int = 0
    retrans: int = 0
    rtt_us: int = 0
    rttvar_us: int = 0
    snd_cwnd: int = 0
    total_retrans: int = 0
    bytes_acked: int = 0
    bytes_received: int = 0
    segs_out: int = 0
    segs_in: int = 0
    delivery_rate: int = 0
    busy_time_us: int = 0
    rwnd_limited_us: int = 0
    sndbuf_limited_us: int = 0
    delivered: int = 0  # data segments delivered (ACKed or SACKed), each counted once
    bytes_sent: int = 0
    bytes_retrans: int = 0
    snd_wnd: int = 0

    @classmethod
    def parse(cls, raw: bytes) -> TcpInfo:
        values = {}
        for name, (offset, fmt) in _FIELDS.items():
            size = struct.calcsize(fmt)
            if offset + size <= len(raw):
                values[name] = struct.unpack_from("=" + fmt, raw, offset)[0]
        return cls(**values)


def tcp_info(sock: socket.socket) -> TcpInfo:
    return TcpInfo.parse(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN))


@dataclass(frozen=True)
class SockMem:
    """``SK_MEMINFO_*``: bytes charged to one socket."""

    rmem_alloc: int = 0
    rcvbuf: int = 0
    wmem_alloc: int = 0
    sndbuf: int = 0
    fwd_alloc: int = 0
    wmem_queued: int = 0
    optmem: int = 0
    backlog: int = 0
    drops: int = 0

    @property
    def charged(self) -> int:
        """Bytes this socket holds against the protocol's memory (queues plus forward allocation)."""
        return self.rmem_alloc + self.wmem_queued + self.fwd_alloc + self.backlog


def sock_meminfo(sock: socket.socket) -> SockMem:
    raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 9 * 4).ljust(9 * 4, b"\0")
    return SockMem(*struct.unpack_from("=IIIIiIIII", raw))  # forward alloc is signed
