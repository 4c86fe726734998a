"""What one socket looks like to the observer: plain dataclasses filled from sock_diag.

Units are the kernel's, named in the field: ``_us`` microseconds, ``_ms`` milliseconds, ``_bps``
bytes per second for ``delivery_rate`` (as ``tcp_info`` reports it). Addresses are text.
These types carry no library objects, so a snapshot round-trips through JSON (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum, IntEnum
from typing import Any

__all__ = ["Owner", "Proto", "SocketMemory", "SocketRecord", "TcpInfo", "TcpState", "Timer"]


class Proto(Enum):
    TCP = "tcp"
    UDP = "udp"


class TcpState(IntEnum):
    """Socket states as sock_diag reports them (the kernel's TCP_* numbering; UDP uses 1 and 7)."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12
    BOUND_INACTIVE = 13


class Timer(IntEnum):
    """``idiag_timer``: which timer is pending on the socket."""

    NONE = 0
    RETRANSMIT = 1
    KEEPALIVE = 2  # an idle established socket shows this only when SO_KEEPALIVE is on
    TIME_WAIT = 3
    ZERO_WINDOW_PROBE = 4


class _Numbers:
    """to_dict/from_dict for the flat numeric records below (a missing key reads as 0)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        return cls(**{f.name: d.get(f.name, 0) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(slots=True)
class TcpInfo(_Numbers):
    """The ``tcp_info`` fields the observer uses (INET_DIAG_INFO), in the kernel's order."""

    delivery_rate_app_limited: bool  # the latest delivery-rate sample was limited by the application
    ato_us: int  # delayed-ACK timeout in use
    snd_mss: int
    rcv_mss: int
    unacked: int
    retrans: int  # segments retransmitted and not yet acknowledged
    last_data_sent_ms: int  # time since the last data segment was sent
    last_data_recv_ms: int
    last_ack_recv_ms: int
    rtt_us: int  # smoothed RTT
    rttvar_us: int
    cwnd: int  # congestion window, segments
    rcv_space: int  # receiver's estimate of the window the peer needs (autotuning)
    total_retrans: int  # segments retransmitted over the connection's life
    bytes_acked: int  # bytes sent and acknowledged
    bytes_received: int
    segs_out: int
    segs_in: int
    notsent_bytes: int
    min_rtt_us: int  # windowed minimum RTT: the path's propagation delay
    data_segs_in: int
    data_segs_out: int
    delivery_rate: int  # bytes per second, latest sample
    busy_time_us: int  # time with data in flight
    rwnd_limited_us: int  # ... of which held back by the peer's receive window
    sndbuf_limited_us: int  # ... of which held back by our send buffer
    bytes_sent: int  # including retransmissions
    bytes_retrans: int
    snd_wnd: int  # the peer's advertised receive window


@dataclass(slots=True)
class SocketMemory(_Numbers):
    """SK_MEMINFO (INET_DIAG_SKMEMINFO): buffer sizes and use, and drops counted on the socket."""

    rmem_alloc: int  # bytes queued for reading
    rcvbuf: int  # receive buffer size (doubled SO_RCVBUF, or autotuned)
    wmem_alloc: int
    sndbuf: int
    wmem_queued: int
    drops: int  # packets dropped at this socket (UDP: receive buffer full)


@dataclass(frozen=True)
class Owner:
    """A process holding a socket (one of them, when a socket is shared after fork)."""

    pid: int
    name: str
    unit: str | None = None  # systemd unit, from the process's cgroup, where there is one

    def describe(self) -> str:
        text = f"{self.name}[{self.pid}]"
        return f"{text} ({self.unit})" if self.unit else text

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name, "unit": self.unit}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Owner:
        return cls(int(d["pid"]), str(d["name"]), d.get("unit"))


@dataclass(slots=True)
class SocketRecord:
    """One TCP or UDP socket. For a LISTEN socket ``rqueue`` is the current accept queue and ``wqueue``
    its maximum (the effective backlog); otherwise they are bytes queued to read and to send.

    A record may be older than the snapshot holding it: an incremental dump (the observer's loop)
    keeps the record of a socket whose counters, state and queues did not change since the previous
    dump. ``observed_at`` says when its values were read."""

    proto: Proto
    family: int  # 4 or 6
    state: TcpState
    local: str
    local_port: int
    remote: str
    remote_port: int
    rqueue: int
    wqueue: int
    inode: int  # 0 for TIME_WAIT and request sockets
    uid: int
    cookie: int  # unique per socket for its lifetime
    timer: Timer
    timer_expires_ms: int
    retransmits: int  # idiag_retrans: current retransmission (or keepalive probe) count
    tcp: TcpInfo | None = None
    memory: SocketMemory | None = None
    congestion: str | None = None
    observed_at: float = 0.0  # CLOCK_MONOTONIC seconds when these values were read: the relative
    # fields (timer_expires_ms, tcp.last_*_ms) count from here

    @property
    def is_listener(self) -> bool:
        return self.state is TcpState.LISTEN

    def endpoint(self) -> str:
        host = f"[{self.local}]" if self.family == 6 else self.local
        return f"{host}:{self.local_port}"

    def peer(self) -> str:
        host = f"[{self.remote}]" if self.family == 6 else self.remote
        return f"{host}:{self.remote_port}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "proto": self.proto.value,
            "family": self.family,
            "state": self.state.name,
            "local": self.local,
            "local_port": self.local_port,
            "remote": self.remote,
            "remote_port": self.remote_port,
            "rqueue": self.rqueue,
            "wqueue": self.wqueue,
            "inode": self.inode,
            "uid": self.uid,
            "cookie": self.cookie,
            "timer": self.timer.name,
            "timer_expires_ms": self.timer_expires_ms,
            "retransmits": self.retransmits,
            "observed_at": self.observed_at,
        }
        if self.tcp is not None:
            d["tcp"] = self.tcp.to_dict()
        if self.memory is not None:
            d["memory"] = self.memory.to_dict()
        if self.congestion is not None:
            d["congestion"] = self.congestion
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SocketRecord:
        return cls(
            proto=Proto(d["proto"]),
            family=int(d["family"]),
            state=TcpState[d["state"]],
            local=d["local"],
            local_port=int(d["local_port"]),
            remote=d["remote"],
            remote_port=int(d["remote_port"]),
            rqueue=int(d["rqueue"]),
            wqueue=int(d["wqueue"]),
            inode=int(d["inode"]),
            uid=int(d["uid"]),
            cookie=int(d["cookie"]),
            timer=Timer[d["timer"]],
            timer_expires_ms=int(d.get("timer_expires_ms", 0)),
            retransmits=int(d.get("retransmits", 0)),
            tcp=TcpInfo.from_dict(d["tcp"]) if "tcp" in d else None,
            memory=SocketMemory.from_dict(d["memory"]) if "memory" in d else None,
            congestion=d.get("congestion"),
            observed_at=float(d.get("observed_at", 0.0)),
        )
