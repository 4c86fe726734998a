"""``struct tcp_info`` and the socket memory array (``SK_MEMINFO_*``): one layout table each, one decoder.

Both structs reach tuner two ways: in sock_diag replies (INET_DIAG_INFO, INET_DIAG_SKMEMINFO; decoded in
tuner.adapters.sockdiag for the observer) and from getsockopt on a socket tuner holds (``TCP_INFO``,
``SO_MEMINFO``; :func:`tcp_info` and :func:`sock_meminfo`, for the probes). Both go through the tables
here. Offsets follow ``include/uapi/linux/tcp.h`` and ``include/uapi/linux/sock_diag.h``; every field is
naturally aligned, so the packed and the C layouts agree.

An older kernel fills a shorter struct: fields beyond its end read as 0 (their defaults).
Units are the kernel's, named in the field: ``_us`` microseconds, ``_ms`` milliseconds, ``_bps`` bytes
per second for ``delivery_rate`` (as ``tcp_info`` reports it). Only the standard library is imported.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "SK_MEMINFO",
    "SO_MEMINFO",
    "TCP_INFO",
    "Field",
    "SocketMemory",
    "StructLayout",
    "TcpInfo",
    "sock_meminfo",
    "tcp_info",
]

SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)


@dataclass(frozen=True)
class Field:
    """One field of a kernel struct: its name in tuner's record, byte offset, ``struct`` code (one value),
    and the conversion from the raw value to the record's unit or type (None: taken as is)."""

    name: str
    offset: int
    code: str
    convert: Callable[[int], Any] | None = None

    @property
    def end(self) -> int:
        return self.offset + struct.calcsize("=" + self.code)


class StructLayout:
    """A kernel struct as a table of the fields tuner reads, in offset order; the record class takes
    them positionally in the same order.

    ``format_for(length)`` is the ``struct`` format (no byte-order prefix) that yields, from ``length``
    bytes, the fields that lie wholly inside them and skips everything else: the sock_diag decoder splices
    it into the format of a whole message."""

    def __init__(self, name: str, table: Sequence[Field]) -> None:
        self.name = name
        self.fields = tuple(table)
        self.names = tuple(f.name for f in self.fields)
        for a, b in zip(self.fields, self.fields[1:]):
            if b.offset < a.end:
                raise ValueError(f"{name}: {b.name} overlaps {a.name} or is out of order")
        self.size = self.fields[-1].end  # bytes up to the end of the last field read
        self.converters = tuple((f.name, f.convert) for f in self.fields if f.convert is not None)
        self._formats: dict[int, tuple[str, int]] = {}

    def field(self, name: str) -> Field:
        return self.fields[self.names.index(name)]

    def span(self, first: str, last: str) -> tuple[int, int]:
        """Offset and size of the bytes from field ``first`` to the end of field ``last``."""
        start = self.field(first).offset
        return start, self.field(last).end - start

    def format_for(self, length: int) -> tuple[str, int]:
        """The format reading the fields wholly inside ``length`` bytes (and padding to ``length``), and
        how many values it yields (the leading fields of the table)."""
        cached = self._formats.get(length)
        if cached is not None:
            return cached
        parts: list[str] = []
        at = count = 0
        for f in self.fields:
            if f.end > length:
                break
            if f.offset > at:
                parts.append(f"{f.offset - at}x")
            parts.append(f.code)
            at = f.end
            count += 1
        if length > at:
            parts.append(f"{length - at}x")
        self._formats[length] = ("".join(parts), count)
        return self._formats[length]

    def values(self, raw: bytes) -> tuple[Any, ...]:
        """The raw values of the fields wholly inside ``raw``, in table order (unconverted)."""
        fmt, _ = self.format_for(len(raw))
        return struct.unpack("=" + fmt, raw)

    def convert(self, record: Any) -> Any:
        """Apply the table's conversions to a record built from raw values; returns the record."""
        for name, fn in self.converters:
            setattr(record, name, fn(getattr(record, name)))
        return record

    def check_record(self, cls: type) -> None:
        """Fail at import if the record class's fields drift from the table (they are filled positionally)."""
        names = tuple(f.name for f in fields(cls))
        if names != self.names:
            raise RuntimeError(
                f"{cls.__name__} fields {names} do not follow the {self.name} table {self.names}"
            )


class _Numbers:
    """to_dict/from_dict for the flat numeric records below (a missing key reads as 0)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        return cls(**{f.name: d.get(f.name, 0) for f in fields(cls)})  # type: ignore[arg-type]


def _low_bit(value: int) -> bool:
    return bool(value & 1)


# struct tcp_info: the fields tuner reads (a byte-wide bitfield is read whole and converted)
TCP_INFO = StructLayout(
    "tcp_info",
    (
        Field("state", 0, "B"),
        Field("probes", 3, "B"),
        Field("delivery_rate_app_limited", 7, "B", _low_bit),  # bit 0 of the byte; fastopen bits above
        Field("rto_us", 8, "I"),
        Field("ato_us", 12, "I"),
        Field("snd_mss", 16, "I"),
        Field("rcv_mss", 20, "I"),
        Field("unacked", 24, "I"),
        Field("lost", 32, "I"),
        Field("retrans", 36, "I"),
        Field("last_data_sent_ms", 44, "I"),
        Field("last_data_recv_ms", 52, "I"),
        Field("last_ack_recv_ms", 56, "I"),
        Field("rtt_us", 68, "I"),
        Field("rttvar_us", 72, "I"),
        Field("cwnd", 80, "I"),
        Field("rcv_space", 96, "I"),
        Field("total_retrans", 100, "I"),
        Field("bytes_acked", 120, "Q"),
        Field("bytes_received", 128, "Q"),
        Field("segs_out", 136, "I"),
        Field("segs_in", 140, "I"),
        Field("notsent_bytes", 144, "I"),
        Field("min_rtt_us", 148, "I"),
        Field("data_segs_in", 152, "I"),
        Field("data_segs_out", 156, "I"),
        Field("delivery_rate", 160, "Q"),
        Field("busy_time_us", 168, "Q"),
        Field("rwnd_limited_us", 176, "Q"),
        Field("sndbuf_limited_us", 184, "Q"),
        Field("delivered", 192, "I"),
        Field("bytes_sent", 200, "Q"),
        Field("bytes_retrans", 208, "Q"),
        Field("snd_wnd", 228, "I"),
    ),
)

# the socket memory array, SK_MEMINFO_RMEM_ALLOC .. SK_MEMINFO_DROPS (u32 each; the forward allocation
# is an int in the kernel). Kernels before 4.16 end before DROPS.
SK_MEMINFO = StructLayout(
    "sk_meminfo",
    (
        Field("rmem_alloc", 0, "I"),
        Field("rcvbuf", 4, "I"),
        Field("wmem_alloc", 8, "I"),
        Field("sndbuf", 12, "I"),
        Field("fwd_alloc", 16, "i"),
        Field("wmem_queued", 20, "I"),
        Field("optmem", 24, "I"),
        Field("backlog", 28, "I"),
        Field("drops", 32, "I"),
    ),
)


@dataclass(slots=True)
class TcpInfo(_Numbers):
    """The ``tcp_info`` fields tuner reads, in the kernel's order (the order of :data:`TCP_INFO`)."""

    state: int = 0  # the kernel's TCP_* state number
    probes: int = 0  # unanswered zero-window or keepalive probes
    delivery_rate_app_limited: bool = False  # the latest delivery-rate sample was limited by the application
    rto_us: int = 0
    ato_us: int = 0  # delayed-ACK timeout in use
    snd_mss: int = 0
    rcv_mss: int = 0
    unacked: int = 0
    lost: int = 0
    retrans: int = 0  # segments retransmitted and not yet acknowledged
    last_data_sent_ms: int = 0  # time since the last data segment was sent
    last_data_recv_ms: int = 0
    last_ack_recv_ms: int = 0
    rtt_us: int = 0  # smoothed RTT
    rttvar_us: int = 0
    cwnd: int = 0  # congestion window, segments
    rcv_space: int = 0  # receiver's estimate of the window the peer needs (autotuning)
    total_retrans: int = 0  # segments retransmitted over the connection's life
    bytes_acked: int = 0  # bytes sent and acknowledged
    bytes_received: int = 0
    segs_out: int = 0
    segs_in: int = 0
    notsent_bytes: int = 0
    min_rtt_us: int = 0  # windowed minimum RTT: the path's propagation delay
    data_segs_in: int = 0
    data_segs_out: int = 0
    delivery_rate: int = 0  # bytes per second, latest sample
    busy_time_us: int = 0  # time with data in flight
    rwnd_limited_us: int = 0  # ... of which held back by the peer's receive window
    sndbuf_limited_us: int = 0  # ... of which held back by our send buffer
    delivered: int = 0  # data segments delivered (ACKed or SACKed), each counted once
    bytes_sent: int = 0  # including retransmissions
    bytes_retrans: int = 0
    snd_wnd: int = 0  # the peer's advertised receive window

    @classmethod
    def parse(cls, raw: bytes) -> TcpInfo:
        """Decode a ``struct tcp_info`` of any length (fields beyond a short one read as 0)."""
        record: TcpInfo = TCP_INFO.convert(cls(*TCP_INFO.values(raw)))
        return record


@dataclass(slots=True)
class SocketMemory(_Numbers):
    """SK_MEMINFO (``SO_MEMINFO``, INET_DIAG_SKMEMINFO): buffer sizes and use, and drops on the socket."""

    rmem_alloc: int = 0  # bytes queued for reading
    rcvbuf: int = 0  # receive buffer size (doubled SO_RCVBUF, or autotuned)
    wmem_alloc: int = 0
    sndbuf: int = 0
    fwd_alloc: int = 0  # forward allocation (may be negative)
    wmem_queued: int = 0
    optmem: int = 0
    backlog: int = 0
    drops: int = 0  # packets dropped at this socket (UDP: receive buffer full)

    @property
    def charged(self) -> int:
        """Bytes this socket holds against the protocol's memory (queues plus forward allocation)."""
        return self.rmem_alloc + self.wmem_queued + self.fwd_alloc + self.backlog

    @classmethod
    def parse(cls, raw: bytes) -> SocketMemory:
        """Decode the memory array of any length (entries beyond a short one read as 0)."""
        return cls(*SK_MEMINFO.values(raw))


TCP_INFO.check_record(TcpInfo)
SK_MEMINFO.check_record(SocketMemory)


def tcp_info(sock: socket.socket) -> TcpInfo:
    """``getsockopt(TCP_INFO)`` of a TCP socket."""
    return TcpInfo.parse(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO.size))


def sock_meminfo(sock: socket.socket) -> SocketMemory:
    """``getsockopt(SO_MEMINFO)``: bytes charged to one socket."""
    return SocketMemory.parse(sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, SK_MEMINFO.size))
