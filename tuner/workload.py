"""Workload and NetworkPath: what traffic to reproduce and over what network conditions.

Both are plain, immutable data shared by observe, probe, search, profiles and the daemon. Each kind's
default workload and everything else about it is in its record (:mod:`tuner.kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any

from tuner.errors import InputError
from tuner.inputs import bounded, bounded_int

__all__ = [
    "Direction",
    "NetworkPath",
    "Workload",
    "WorkloadKind",
    "WritePattern",
]


class WorkloadKind(Enum):
    RR = "rr"  # TCP request/response (echo service)
    BULK = "bulk"  # long TCP streams
    BURST = "burst"  # many short connections at once against a listener
    UDP = "udp"  # UDP sender into a reader with a service rate
    KEEPALIVE = "keepalive"  # idle connections whose peer silently disappears
    MEMORY = "memory"  # many mostly idle connections: kernel memory per connection


class WritePattern(Enum):
    SINGLE = "single"  # the request in one write
    SPLIT = "split"  # a header write, then a body write (write-write-read: the Nagle trap)


class Direction(Enum):
    UPLOAD = "upload"  # client sends to server
    DOWNLOAD = "download"  # server sends to client


@dataclass(frozen=True)
class Workload:
    """A kind of traffic and its shape. Fields a kind does not use are ignored by its probe."""

    kind: WorkloadKind
    # rr
    request_size: int = 100
    response_size: int = 100
    write_pattern: WritePattern = WritePattern.SINGLE
    connections: int = 1
    think_time: float = 0.0  # seconds between requests on one connection
    # bulk
    streams: int = 1
    direction: Direction = Direction.UPLOAD
    # burst
    burst_connections: int = 2000
    burst_threads: int = 256
    accept_rate: float = 2000.0  # accepts per second the server performs
    # udp
    # the default: bursts a receive buffer can absorb (10k/s on average into a reader of 20k/s). An
    # offered rate above service_rate is an overload no buffer fixes (see tuner.probe.udp).
    udp_rate: float = 10000.0  # datagrams per second offered (on average)
    udp_size: int = 1200  # bytes per datagram
    udp_burst: int = 500  # datagrams sent back to back
    service_rate: float = 20000.0  # datagrams per second the reader processes
    # keepalive / memory
    idle_connections: int = 100

    def __post_init__(self) -> None:
        for name, (lo, hi) in WORKLOAD_BOUNDS.items():
            value = getattr(self, name, None)
            if isinstance(value, float):
                bounded(value, lo, hi, f"workload {name}", lo_open=lo == 0 and name in _POSITIVE)
            elif value is not None:
                bounded_int(value, int(lo), int(hi), f"workload {name}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise InputError(
                f"unknown workload field(s): {', '.join(sorted(unknown))}",
                hint=f"known fields: {', '.join(known)}",
            )
        if "kind" not in data:
            raise InputError(
                "a workload needs a kind", hint=f"one of {', '.join(k.value for k in WorkloadKind)}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            kwargs[name] = _coerce(name, value, known[name].type)
        return cls(**kwargs)

    def with_(self, **changes: Any) -> Workload:
        return replace(self, **changes)


# The range of every numeric workload field: what a probe on one machine can reproduce, and far beyond any
# real service's shape; a value outside is a typo or an attack, refused with the range in the message.
WORKLOAD_BOUNDS: Mapping[str, tuple[float, float]] = {
    "request_size": (1, 64 << 20),
    "response_size": (1, 64 << 20),
    "connections": (1, 10_000),
    "think_time": (0.0, 3600.0),
    "streams": (1, 128),
    "burst_connections": (1, 100_000),
    "burst_threads": (1, 4096),
    "accept_rate": (0.0, 1e7),
    "udp_rate": (0.0, 1e7),
    "udp_size": (1, 65507),
    "udp_burst": (1, 100_000),
    "service_rate": (0.0, 1e7),
    "idle_connections": (1, 100_000),
}
_POSITIVE = {"accept_rate", "udp_rate", "service_rate"}  # rates: > 0

# The range of a path: up to 10 s round trip (a geostationary hop is 0.6 s), 1 Tbit/s, 1e6 queued packets.
MAX_RTT = 10.0
MAX_RATE_BPS = 1e12
MAX_QUEUE_PACKETS = 1_000_000

_ENUMS = {"WorkloadKind": WorkloadKind, "WritePattern": WritePattern, "Direction": Direction}


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    tname = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    if tname in _ENUMS:
        enum = _ENUMS[tname]
        try:
            return enum(value)
        except ValueError:
            raise InputError(
                f"workload {name}: {value!r} is not valid", hint=f"one of {', '.join(e.value for e in enum)}"
            ) from None
    if tname == "int":
        lo, hi = WORKLOAD_BOUNDS.get(name, (0, 2**31 - 1))
        return bounded_int(value, int(lo), int(hi), f"workload {name}")
    if tname == "float":
        lo, hi = WORKLOAD_BOUNDS.get(name, (0.0, 1e9))
        return bounded(value, lo, hi, f"workload {name}", lo_open=name in _POSITIVE)
    return value


@dataclass(frozen=True)
class NetworkPath:
    """Network conditions between the two peers. ``rate_bps`` None means uncapped; ``queue_packets`` is
    the bottleneck queue (None: one bandwidth-delay product plus 2 ms of the rate, at least 100 packets)."""

    rtt: float = 0.0  # seconds, round trip
    rate_bps: float | None = None  # bits per second
    loss: float = 0.0  # probability per packet, each direction
    jitter: float = 0.0  # seconds (only where the backend supports it)
    queue_packets: int | None = None

    def __post_init__(self) -> None:
        bounded(self.rtt, 0.0, MAX_RTT, "path rtt", unit="s")
        bounded(self.jitter, 0.0, MAX_RTT, "path jitter", unit="s")
        if self.rate_bps is not None:
            bounded(self.rate_bps, 0.0, MAX_RATE_BPS, "path rate", unit="bit/s", lo_open=True)
        bounded(self.loss, 0.0, 1.0, "path loss (a fraction)")
        if self.queue_packets is not None:
            bounded_int(self.queue_packets, 1, MAX_QUEUE_PACKETS, "path queue (packets)")

    @property
    def is_plain(self) -> bool:
        """No emulation needed: a bare veth pair serves."""
        return self.rtt == 0 and self.rate_bps is None and self.loss == 0 and self.jitter == 0

    def describe(self) -> str:
        parts = [f"rtt {self.rtt * 1e3:g} ms"]
        parts.append(f"rate {self.rate_bps / 1e6:g} Mbit/s" if self.rate_bps else "rate uncapped")
        if self.loss:
            parts.append(f"loss {self.loss * 100:g}%")
        if self.jitter:
            parts.append(f"jitter {self.jitter * 1e3:g} ms")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkPath:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(
                f"unknown path field(s): {', '.join(sorted(unknown))}",
                hint=f"known fields: {', '.join(sorted(known))}",
            )
        return cls(**dict(data))
