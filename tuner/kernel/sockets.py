"""Sockets as the kernel lists them (sock_diag): plain dataclasses, filled by tuner.adapters.sockdiag.

Addresses are text; ``tcp_info`` and socket memory are the records of :mod:`tuner.kernel.structs`.
These types carry no library objects, so a snapshot round-trips through JSON (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from tuner.kernel.structs import SocketMemory, TcpInfo

__all__ = ["Owner", "Proto", "SocketRecord", "TcpState", "Timer"]


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
