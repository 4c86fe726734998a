"""The workload signature: pure functions from two snapshots to services, classes, paths and symptoms.

``signature(before, after)`` groups the sockets by service (a listening port and its connections;
a remote service for clients; a UDP port), classifies each group, estimates its NetworkPath and the shape of
its traffic, derives the Workload a search should reproduce, and lists symptoms with their evidence
and the catalogue knobs that address them. Nothing here reads the system.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from tuner.kernel import Owner, Proto, SocketRecord, TcpState, Timer
from tuner.observe.counters import Counters, delta
from tuner.observe.snapshot import Snapshot, gc_paused
from tuner.units import format_duration, format_size
from tuner.workload import Direction, NetworkPath, Workload, WorkloadKind, WritePattern

__all__ = [
    "SYMPTOM_KNOBS",
    "Observation",
    "Role",
    "ServiceClass",
    "ServiceShape",
    "ServiceSignature",
    "Symptom",
    "Thresholds",
    "signature",
]


class ServiceClass(Enum):
    REQUEST_RESPONSE = "request/response"
    BULK = "bulk"
    CHURN = "connection churn"
    UDP_STREAM = "udp stream"
    IDLE = "long-lived idle"


class Role(Enum):
    SERVER = "server"  # a listening port and the connections accepted on it
    CLIENT = "client"  # connections to one remote service
    UDP = "udp"  # a UDP port (or the UDP sockets sending to one remote)


@dataclass(frozen=True)
class Symptom:
    name: str
    evidence: str
    knobs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "evidence": self.evidence, "knobs": list(self.knobs)}


# every knob named here is a catalogue name (tests check it)
SYMPTOM_KNOBS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "listen-overflow": ("backlog", "net.core.somaxconn"),
        "syn-drops": (
            "net.ipv4.tcp_max_syn_backlog",
            "net.ipv4.tcp_syncookies",
            "backlog",
            "net.core.somaxconn",
        ),
        "receive-window-limited": ("net.ipv4.tcp_rmem", "SO_RCVBUF", "net.core.rmem_max"),
        "send-buffer-limited": ("net.ipv4.tcp_wmem", "SO_SNDBUF", "net.core.wmem_max"),
        "udp-receive-buffer-errors": ("SO_RCVBUF", "net.core.rmem_max", "net.core.rmem_default"),
        "idle-without-keepalive": (
            "SO_KEEPALIVE",
            "TCP_KEEPIDLE",
            "TCP_KEEPINTVL",
            "TCP_KEEPCNT",
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
        ),
        "nagle-delayed-ack": ("TCP_NODELAY", "TCP_QUICKACK"),
        "time-wait-pressure": ("net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range"),
        "ephemeral-port-exhaustion": ("net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"),
        "retransmissions": ("net.ipv4.tcp_congestion_control", "TCP_CONGESTION"),
    }
)


def _symptom(name: str, evidence: str) -> Symptom:
    return Symptom(name, evidence, SYMPTOM_KNOBS[name])


@dataclass(frozen=True)
class Thresholds:
    """Where a signal becomes a class or a symptom. Defaults suit a production host."""

    churn_rate: float = 20.0  # new connections per second
    bulk_min_bytes: int = 1 << 20  # bytes in the dominant direction during the interval
    bulk_segment_ratio: float = 16.0  # dominant data segments per data segment the other way
    limited_share: float = 0.2  # share of busy time held back by a window or buffer
    limited_min_busy: float = 0.1  # seconds of busy time (summed) before judging that share
    idle_min_connections: int = 10  # idle connections without keepalive worth a symptom
    nagle_min_srtt: float = 0.010  # seconds
    nagle_rtt_ratio: float = 10.0  # smoothed RTT over min RTT
    nagle_segments_per_exchange: float = 1.5
    retrans_share: float = 0.01
    retrans_min_segments: int = 200
    port_use_share: float = 0.5  # of the ephemeral port range, projected over TIME_WAIT
    time_wait_share: float = 0.25  # TIME_WAIT sockets to one remote, of the port range
    time_wait_count: int = 20000  # TIME_WAIT sockets of one service, absolute
    time_wait_lifetime: float = 60.0  # seconds a TIME_WAIT socket holds its port (TCP_TIMEWAIT_LEN)
    min_path_rtt: float = 0.0005  # below this the peers are local: the path is left unemulated


@dataclass(frozen=True)
class ServiceShape:
    """The traffic of one service during the interval, seen from this host's side."""

    connections: int = 0  # live connections at the end
    new_connections: int = 0
    connection_rate: float = 0.0  # new connections per second
    time_wait: int = 0
    exchanges: int = 0  # request/response turns (smaller of data segments in and out)
    exchange_rate: float = 0.0  # per second, all connections
    bytes_out: int = 0  # sent and acknowledged
    bytes_in: int = 0
    bytes_per_exchange: float = 0.0
    request_size: int = 0  # bytes the client side sends per exchange
    response_size: int = 0
    throughput_bps: float = 0.0  # bits per second in the busier direction
    udp_drops: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class ServiceSignature:
    key: str
    role: Role
    endpoint: str  # ":5000" for a server, "10.0.0.2:5000" for a remote service
    process: Owner | None
    service_class: ServiceClass
    shape: ServiceShape
    path: NetworkPath  # estimate of the network conditions to its peers
    workload: Workload  # what a search should reproduce for it
    symptoms: list[Symptom] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def knobs(self) -> tuple[str, ...]:
        """The knobs its symptoms name, in order, without repeats."""
        return tuple(dict.fromkeys(k for s in self.symptoms for k in s.knobs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "role": self.role.value,
            "endpoint": self.endpoint,
            "process": self.process.to_dict() if self.process else None,
            "class": self.service_class.value,
            "shape": self.shape.to_dict(),
            "path": self.path.to_dict(),
            "workload": self.workload.to_dict(),
            "symptoms": [s.to_dict() for s in self.symptoms],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Observation:
    netns: str | None
    wall_time: float  # when the interval started (seconds since the epoch)
    duration: float  # seconds between the two snapshots
    services: list[ServiceSignature]
    symptoms: list[Symptom]  # namespace-wide ones no service could be blamed for
    counters: Counters  # deltas over the interval (only those that moved)
    sockets: dict[str, int]  # sockets by protocol and state at the end
    snapshot_seconds: float = 0.0  # time spent reading sockets for the last snapshot

    @property
    def needs_tuning(self) -> list[ServiceSignature]:
        return [s for s in self.services if s.symptoms]

    def to_dict(self) -> dict[str, Any]:
        return {
            "netns": self.netns,
            "wall_time": self.wall_time,
            "duration": self.duration,
            "snapshot_seconds": self.snapshot_seconds,
            "sockets": dict(self.sockets),
            "services": [s.to_dict() for s in self.services],
            "symptoms": [s.to_dict() for s in self.symptoms],
            "counters": dict(self.counters),
        }


# --- grouping ---------------------------------------------------------------------------------------

_LIVE = frozenset(
    {
        TcpState.ESTABLISHED,
        TcpState.CLOSE_WAIT,
        TcpState.FIN_WAIT1,
        TcpState.FIN_WAIT2,
        TcpState.LAST_ACK,
        TcpState.CLOSING,
        TcpState.SYN_SENT,
    }
)
_LIVE_VALUES = frozenset(s.value for s in _LIVE)
_INODES_KEPT = 16  # sockets per service kept for naming its process


class _Group:
    """Accumulates one service's sockets (internal)."""

    def __init__(self, key: tuple, role: Role, endpoint: str) -> None:
        self.key = key
        self.role = role
        self.endpoint = endpoint
        self.listeners: list[SocketRecord] = []
        self.udp: list[tuple[SocketRecord, SocketRecord | None]] = []
        self.live = self.new = self.ended = self.time_wait = self.new_time_wait = self.requests = 0
        self.inodes: list[int] = []
        # sums of tcp_info deltas over the interval
        self.acked = self.received = self.segs_out = self.segs_in = self.exchanges = 0
        self.busy = self.rwnd = self.sndbuf = self.retrans = self.data_segs_sent = 0
        self.bytes_sent = self.bytes_retrans = 0
        self.active = 0  # connections that moved data
        self.srtt: list[int] = []
        self.min_rtt: list[int] = []
        self.mss: list[int] = []
        self.rates: list[tuple[int, bool]] = []  # (delivery_rate, app_limited) of active ones
        self.idle = self.idle_no_keepalive = 0
        self.idle_max_ms = 0.0
        self.congestion: set[str] = set()


def _key(s: SocketRecord, server_ports: set[int]) -> tuple[tuple, Role, str]:
    if s.proto is Proto.UDP:
        if s.state is TcpState.ESTABLISHED and s.remote_port:
            return ("udp", "to", s.remote, s.remote_port), Role.UDP, s.peer()
        return ("udp", s.local_port), Role.UDP, f":{s.local_port}"
    if s.state is TcpState.LISTEN or s.local_port in server_ports:
        return ("tcp", s.local_port), Role.SERVER, f":{s.local_port}"
    return ("tcp", "to", s.remote, s.remote_port), Role.CLIENT, s.peer()


def _ephemeral_range(sysctls: Mapping[str, Any]) -> tuple[int, int]:
    value = sysctls.get("net.ipv4.ip_local_port_range")
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return 32768, 60999


def _groups(before: Snapshot, after: Snapshot) -> dict[tuple, _Group]:
    """Sockets into services, with the tcp_info deltas of each. Written for 10,000s of sockets per call
    (the daemon's loop): identity tests instead of enum hashing, one dict lookup per socket."""
    tcp, udp = Proto.TCP, Proto.UDP
    listen, time_wait, established = TcpState.LISTEN, TcpState.TIME_WAIT, TcpState.ESTABLISHED
    syn_recv, new_syn_recv, keepalive = TcpState.SYN_RECV, TcpState.NEW_SYN_RECV, Timer.KEEPALIVE
    live_values = _LIVE_VALUES
    server_ports = {
        s.local_port for snap in (before, after) for s in snap.sockets if s.state is listen and s.proto is tcp
    }
    old = {s.cookie: s for s in before.sockets}
    groups: dict[tuple, _Group] = {}
    by_port: dict[int, _Group] = {}
    by_remote: dict[tuple[str, int], _Group] = {}
    now = after.taken_at
    interval_ms = max(1.0, (now - before.taken_at) * 1e3)

    def group_of(s: SocketRecord) -> _Group:
        key, role, endpoint = _key(s, server_ports)
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(key, role, endpoint)
        return g

    for s in after.sockets:
        prev = old.pop(s.cookie, None)
        if s.proto is udp:
            g = group_of(s)
            g.udp.append((s, prev))
            if s.inode and len(g.inodes) < _INODES_KEPT:
                g.inodes.append(s.inode)
            continue
        port = s.local_port
        if port in server_ports:
            g = by_port.get(port) or by_port.setdefault(port, group_of(s))
        else:
            g = by_remote.get((s.remote, s.remote_port)) or by_remote.setdefault(
                (s.remote, s.remote_port), group_of(s)
            )
        state = s.state
        if state is listen:
            g.listeners.append(s)
            continue
        if s.inode and len(g.inodes) < _INODES_KEPT:
            g.inodes.append(s.inode)
        if state is time_wait:
            g.time_wait += 1
            if prev is None:
                g.new_time_wait += 1
                g.new += 1
            continue
        if state is syn_recv or state is new_syn_recv:
            g.requests += 1
            continue
        if prev is None:
            g.new += 1
        if state._value_ in live_values:
            g.live += 1
        t = s.tcp
        if t is None:
            continue
        b = prev.tcp if prev is not None else None
        if b is t:  # an unchanged record carried over by an incremental dump: no traffic since
            acked = received = 0
        elif b is None:
            acked, received = t.bytes_acked, t.bytes_received
        else:
            acked, received = t.bytes_acked - b.bytes_acked, t.bytes_received - b.bytes_received
        if acked > 0 or received > 0:
            if b is None:
                d_out, d_in = t.data_segs_out, t.data_segs_in
                busy, rwnd, sndbuf = t.busy_time_us, t.rwnd_limited_us, t.sndbuf_limited_us
                retrans, sent, bretrans = t.total_retrans, t.bytes_sent, t.bytes_retrans
            else:
                d_out, d_in = t.data_segs_out - b.data_segs_out, t.data_segs_in - b.data_segs_in
                busy, rwnd = t.busy_time_us - b.busy_time_us, t.rwnd_limited_us - b.rwnd_limited_us
                sndbuf = t.sndbuf_limited_us - b.sndbuf_limited_us
                retrans, sent = t.total_retrans - b.total_retrans, t.bytes_sent - b.bytes_sent
                bretrans = t.bytes_retrans - b.bytes_retrans
            if s.congestion:
                g.congestion.add(s.congestion)
            g.active += 1
            g.acked += acked
            g.received += received
            g.segs_out += d_out
            g.segs_in += d_in
            g.exchanges += min(d_out, d_in)
            g.busy += busy
            g.rwnd += rwnd
            g.sndbuf += sndbuf
            g.retrans += retrans
            g.bytes_sent += sent
            g.bytes_retrans += bretrans
            g.srtt.append(t.rtt_us)
            g.min_rtt.append(t.min_rtt_us)
            g.mss.append(t.snd_mss)
            g.rates.append((t.delivery_rate, t.delivery_rate_app_limited))
            continue
        if t.min_rtt_us:
            g.min_rtt.append(t.min_rtt_us)
        if state is established:
            idle_for: float = min(t.last_data_sent_ms, t.last_data_recv_ms)
            if s.observed_at:
                idle_for += (now - s.observed_at) * 1e3
            if prev is not None or idle_for >= interval_ms:
                g.idle += 1
                if idle_for > g.idle_max_ms:
                    g.idle_max_ms = idle_for
                if s.timer is not keepalive:
                    g.idle_no_keepalive += 1
    for s in old.values():  # gone since the first snapshot
        state = s.state
        if s.proto is tcp and state._value_ in live_values:
            group_of(s).ended += 1
    return groups


# --- classification, path, shape, workload, symptoms ----------------------------------------------


def _median(values: Iterable[float]) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else 0.0


def _classify(g: _Group, shape: ServiceShape, th: Thresholds) -> ServiceClass:
    if g.role is Role.UDP:
        return ServiceClass.UDP_STREAM
    if shape.connection_rate >= th.churn_rate:
        return ServiceClass.CHURN
    if g.active == 0:
        return ServiceClass.IDLE
    dominant, other = max(g.acked, g.received), min(g.acked, g.received)
    seg_dominant = g.segs_out if g.acked >= g.received else g.segs_in
    seg_other = g.segs_in if g.acked >= g.received else g.segs_out
    one_way = (
        seg_dominant >= th.bulk_segment_ratio * max(1, seg_other)
        and other * th.bulk_segment_ratio <= dominant
    )
    # a window-limited stream is slow, so volume alone does not make bulk: full-sized segments do
    full_segments = seg_dominant > 0 and dominant / seg_dominant >= 0.5 * _median(g.mss)
    if one_way and (full_segments or dominant >= th.bulk_min_bytes):
        return ServiceClass.BULK
    return ServiceClass.REQUEST_RESPONSE


def _path(g: _Group, notes: list[str], th: Thresholds) -> NetworkPath:
    if g.role is Role.UDP:
        notes.append("UDP carries no RTT or rate information: path left unemulated")
        return NetworkPath()
    rtt = _median(r for r in g.min_rtt if r > 0) / 1e6
    if 0 < rtt < th.min_path_rtt:
        # no path to emulate: a rate here is the host's, and retransmissions (SYNs and data re-sent after
        # a listen overflow) are the listener's, not loss on a path
        notes.append(f"min RTT {format_duration(rtt)}: local peers, path left unemulated (no rate or loss)")
        return NetworkPath()
    rate = None
    limited = (g.rwnd + g.sndbuf) / g.busy if g.busy else 0.0
    usable = [r for r, app_limited in g.rates if r and not app_limited]
    if usable and limited < th.limited_share:
        rate = max(usable) * 8.0
    elif g.rates and any(r for r, _ in g.rates):
        best = max(r for r, _ in g.rates) * 8.0
        why = "window or buffer limited" if limited >= th.limited_share else "application limited"
        notes.append(f"path rate unknown: the flows were {why} (delivered up to {best / 1e6:.3g} Mbit/s)")
    loss = 0.0
    if g.segs_out >= th.retrans_min_segments and g.bytes_sent > 0:
        loss = min(0.2, max(0.0, g.bytes_retrans / g.bytes_sent))
        if loss:
            notes.append(
                "path loss estimated from retransmitted bytes: drops at a congested bottleneck "
                "count as loss too"
            )
    return NetworkPath(rtt=round(rtt, 6), rate_bps=rate, loss=round(loss, 5))


def _shape(g: _Group, duration: float, passive: int, active_opens: int, single: bool) -> ServiceShape:
    new = g.new
    # short connections that opened and closed between the snapshots leave no socket behind on the
    # side that did not close first: when one service is the only one of its role, the namespace's
    # open counters count them
    if single and g.role is Role.SERVER:
        new = max(new, passive)
    elif single and g.role is Role.CLIENT:
        new = max(new, active_opens)
    exchanges = g.exchanges
    out_, in_ = g.acked, g.received
    if g.role is Role.SERVER:
        request, response = in_, out_
    else:
        request, response = out_, in_
    drops = 0
    for s, prev in g.udp:
        if s.memory is not None:
            drops += s.memory.drops - (prev.memory.drops if prev is not None and prev.memory else 0)
    return ServiceShape(
        connections=g.live,
        new_connections=new,
        connection_rate=round(new / duration, 3),
        time_wait=g.time_wait,
        exchanges=exchanges,
        exchange_rate=round(exchanges / duration, 3),
        bytes_out=out_,
        bytes_in=in_,
        bytes_per_exchange=round((out_ + in_) / exchanges, 1) if exchanges else 0.0,
        request_size=round(request / exchanges) if exchanges else 0,
        response_size=round(response / exchanges) if exchanges else 0,
        throughput_bps=round(max(out_, in_) * 8 / duration, 1),
        udp_drops=max(0, drops),
    )


def _client_segments_per_exchange(g: _Group) -> float:
    if not g.exchanges:
        return 0.0
    return (g.segs_in if g.role is Role.SERVER else g.segs_out) / g.exchanges


def _workload(
    g: _Group,
    cls: ServiceClass,
    shape: ServiceShape,
    symptoms: list[Symptom],
    duration: float,
    udp_rates: tuple[float, float] | None,
) -> Workload:
    names = {s.name for s in symptoms}
    if cls is ServiceClass.UDP_STREAM:
        if udp_rates is not None:
            offered, served = udp_rates
            return Workload(
                WorkloadKind.UDP,
                udp_rate=round(max(offered, 1.0), 1),
                service_rate=round(max(served, 1.0), 1),
            )
        return Workload(WorkloadKind.UDP)
    if cls is ServiceClass.CHURN:
        burst = max(100, min(5000, shape.new_connections))
        return Workload(
            WorkloadKind.BURST,
            burst_connections=burst,
            burst_threads=max(8, min(256, burst // 8)),
            accept_rate=round(max(shape.connection_rate, 1.0), 1),
        )
    if cls is ServiceClass.IDLE:
        if "idle-without-keepalive" in names:
            return Workload(WorkloadKind.KEEPALIVE, idle_connections=max(1, min(g.idle, 64)))
        return Workload(WorkloadKind.MEMORY, idle_connections=max(1, min(g.live, 5000)))
    if cls is ServiceClass.BULK:
        sends = g.acked >= g.received
        upload = sends if g.role is Role.CLIENT else not sends
        return Workload(
            WorkloadKind.BULK,
            streams=max(1, min(g.active, 16)),
            direction=Direction.UPLOAD if upload else Direction.DOWNLOAD,
        )
    split = "nagle-delayed-ack" in names or _client_segments_per_exchange(g) >= 1.5
    conns = max(1, min(g.active or g.live, 256))
    think = 0.0
    if "nagle-delayed-ack" not in names and shape.exchanges:
        per_conn_interval = duration * conns / shape.exchanges
        think = max(0.0, per_conn_interval - _median(g.srtt) / 1e6)
    return Workload(
        WorkloadKind.RR,
        request_size=max(1, shape.request_size),
        response_size=max(1, shape.response_size),
        write_pattern=WritePattern.SPLIT if split else WritePattern.SINGLE,
        connections=conns,
        think_time=round(think, 4),
    )


def _ms(us: float) -> str:
    return format_duration(us / 1e6)


def _symptoms(
    g: _Group,
    cls: ServiceClass,
    shape: ServiceShape,
    counters: Counters,
    duration: float,
    sysctls: Mapping[str, Any],
    th: Thresholds,
) -> list[Symptom]:
    out: list[Symptom] = []
    # buffers and windows (tcp_info time shares, summed over the group)
    if g.busy >= th.limited_min_busy * 1e6:
        rate = f"{g.active} connection(s), {shape.throughput_bps / 1e6:.3g} Mbit/s"
        for name, held, what, why in (
            (
                "receive-window-limited",
                g.rwnd,
                "the peer's receive window",
                f" at min RTT {_ms(_median(g.min_rtt))}): the receiver's buffer is smaller than the "
                "bandwidth-delay product",
            ),
            ("send-buffer-limited", g.sndbuf, "the send buffer", ")"),
        ):
            share = held / g.busy
            if share >= th.limited_share:
                out.append(
                    _symptom(name, f"{what} held back sending {share:.0%} of the busy time ({rate}{why}")
                )
    # Nagle + delayed ACK: several small writes per exchange, RTT far above the path's
    if cls is ServiceClass.REQUEST_RESPONSE and g.exchanges:
        srtt, min_rtt = _median(g.srtt), _median(r for r in g.min_rtt if r > 0)
        writes = g.segs_out / g.exchanges
        seg_size = g.acked / g.segs_out if g.segs_out else 0
        if (
            srtt >= th.nagle_min_srtt * 1e6
            and srtt >= th.nagle_rtt_ratio * max(min_rtt, 1)
            and writes >= th.nagle_segments_per_exchange
            and seg_size <= 0.5 * _median(g.mss)
        ):
            delayed = counters.get("TcpExt.DelayedACKs", 0)
            out.append(
                _symptom(
                    "nagle-delayed-ack",
                    (
                        f"{writes:.1f} small data segments (~{seg_size:.0f} B) sent per exchange, smoothed RTT "
                        f"{_ms(srtt)} against a min RTT of {_ms(min_rtt)}; {shape.exchange_rate:.3g} exchanges/s over "
                        f"{g.active} connection(s); TcpExt.DelayedACKs +{delayed}: later writes wait for the peer's "
                        f"delayed ACK"
                    ),
                )
            )
    if g.idle_no_keepalive >= th.idle_min_connections:
        out.append(
            _symptom(
                "idle-without-keepalive",
                (
                    f"{g.idle_no_keepalive} of {g.live} connection(s) idle (up to "
                    f"{format_duration(g.idle_max_ms / 1e3)} without data) with no keepalive timer: "
                    f"a vanished peer would hold them forever"
                ),
            )
        )
    if g.segs_out >= th.retrans_min_segments and g.retrans / g.segs_out >= th.retrans_share:
        out.append(
            _symptom(
                "retransmissions",
                (
                    f"{g.retrans} of {g.segs_out} data segments retransmitted ({g.retrans / g.segs_out:.1%}); "
                    f"congestion control {', '.join(sorted(g.congestion)) or 'unknown'}"
                ),
            )
        )
    if g.role is Role.CLIENT:
        lo, hi = _ephemeral_range(sysctls)
        ports = hi - lo + 1
        in_use = g.live + g.time_wait
        projected = g.live + (g.new_time_wait / duration) * th.time_wait_lifetime if duration else in_use
        projected = max(projected, in_use)
        if projected >= th.port_use_share * ports:
            out.append(
                _symptom(
                    "ephemeral-port-exhaustion",
                    (
                        f"{in_use} of {ports} ephemeral ports ({lo}-{hi}) in use towards {g.endpoint} "
                        f"({g.time_wait} in TIME_WAIT, {g.new_time_wait / duration:.3g} new/s; about "
                        f"{projected:.0f} at steady state over TIME_WAIT's {th.time_wait_lifetime:.0f} s)"
                    ),
                )
            )
        elif g.time_wait >= th.time_wait_share * ports:
            out.append(
                _symptom(
                    "time-wait-pressure",
                    (
                        f"{g.time_wait} TIME_WAIT sockets towards {g.endpoint}, {g.time_wait / ports:.0%} of the "
                        f"{ports} ephemeral ports"
                    ),
                )
            )
    if g.time_wait >= th.time_wait_count and not any(s.name == "time-wait-pressure" for s in out):
        out.append(_symptom("time-wait-pressure", f"{g.time_wait} TIME_WAIT sockets on {g.endpoint}"))
    if shape.udp_drops > 0:
        rcvbuf = max((s.memory.rcvbuf for s, _ in g.udp if s.memory), default=0)
        errors = counters.get("Udp.RcvbufErrors", 0) + counters.get("Udp6.RcvbufErrors", 0)
        out.append(
            _symptom(
                "udp-receive-buffer-errors",
                (
                    f"{shape.udp_drops} datagrams dropped at {g.endpoint} with a full receive buffer "
                    f"(rcvbuf {format_size(rcvbuf)}); Udp.RcvbufErrors +{errors} namespace-wide"
                ),
            )
        )
    return out


def _listener_symptoms(
    groups: list[_Group], counters: Counters, peaks: Mapping[int, int], duration: float
) -> tuple[dict[tuple, list[Symptom]], list[Symptom]]:
    """Listen-queue overflows and SYN drops are counted per namespace: blame the listeners that show it."""
    overflows = counters.get("TcpExt.ListenOverflows", 0)
    syn_drops = max(0, counters.get("TcpExt.ListenDrops", 0) - overflows) + counters.get(
        "TcpExt.TCPReqQFullDrop", 0
    )
    cookies = counters.get("TcpExt.SyncookiesSent", 0)
    per_group: dict[tuple, list[Symptom]] = {}
    unblamed: list[Symptom] = []
    servers = [g for g in groups if g.listeners]

    def fill(g: _Group) -> tuple[int, int]:
        cur = max(max(peaks.get(s.cookie, 0), s.rqueue) for s in g.listeners)
        return cur, max(s.wqueue for s in g.listeners)

    if overflows:
        full = [g for g in servers if fill(g)[0] >= fill(g)[1]]
        blamed = full or (servers if len(servers) == 1 else [])
        for g in blamed:
            cur, cap = fill(g)
            per_group.setdefault(g.key, []).append(
                _symptom(
                    "listen-overflow",
                    (
                        f"TcpExt.ListenOverflows +{overflows} in {duration:.3g} s; accept queue of {g.endpoint} peaked "
                        f"at {cur} with a backlog of {cap}: connections waited for SYN retransmits"
                    ),
                )
            )
        if not blamed:
            unblamed.append(
                _symptom(
                    "listen-overflow",
                    (
                        f"TcpExt.ListenOverflows +{overflows} in {duration:.3g} s, but no listener was seen full"
                    ),
                )
            )
    if syn_drops or cookies:
        parts = []
        if syn_drops:
            parts.append(
                f"{syn_drops} SYNs dropped beyond accept-queue overflows (TcpExt.ListenDrops, TCPReqQFullDrop)"
            )
        if cookies:
            parts.append(f"{cookies} SYN cookies sent (TcpExt.SyncookiesSent): the SYN queue was full")
        text = "; ".join(parts) + f" in {duration:.3g} s"
        blamed = servers if len(servers) == 1 else []
        for g in blamed:
            per_group.setdefault(g.key, []).append(_symptom("syn-drops", f"{text} on {g.endpoint}"))
        if not blamed:
            unblamed.append(_symptom("syn-drops", text))
    return per_group, unblamed


def signature(
    before: Snapshot,
    after: Snapshot,
    *,
    listener_peaks: Mapping[int, int] | None = None,
    thresholds: Thresholds | None = None,
) -> Observation:
    """Services, classes, paths, workloads and symptoms over the interval between two snapshots.

    ``listener_peaks`` maps a listener's cookie to the largest accept queue sampled in between."""
    th = thresholds or Thresholds()
    duration = max(1e-3, after.taken_at - before.taken_at)
    counters = delta(before.counters, after.counters)
    with gc_paused():
        groups = _groups(before, after)
    peaks = listener_peaks or {}
    listen_symptoms, unblamed = _listener_symptoms(list(groups.values()), counters, peaks, duration)
    owners = {**before.owners, **after.owners}
    by_role: dict[Role, int] = {}
    for g in groups.values():
        by_role[g.role] = by_role.get(g.role, 0) + 1
    lo, hi = _ephemeral_range(after.sysctls)
    udp_servers = [
        g for g in groups.values() if g.role is Role.UDP and len(g.key) == 2 and not lo <= g.key[1] <= hi
    ]
    services: list[ServiceSignature] = []
    for g in groups.values():
        single = by_role[g.role] == 1
        shape = _shape(
            g, duration, counters.get("Tcp.PassiveOpens", 0), counters.get("Tcp.ActiveOpens", 0), single
        )
        if (
            g.role is not Role.UDP
            and not g.listeners
            and g.live == 0
            and g.time_wait == 0
            and not shape.new_connections
        ):
            continue  # only closing remnants
        cls = _classify(g, shape, th)
        symptoms = listen_symptoms.get(g.key, [])
        if symptoms and cls is not ServiceClass.UDP_STREAM and shape.new_connections:
            cls = ServiceClass.CHURN  # a listener that overflows is a connection-churn problem
        symptoms = symptoms + _symptoms(g, cls, shape, counters, duration, after.sysctls, th)
        notes: list[str] = []
        path = _path(g, notes, th)
        udp_rates = None
        if g.role is Role.UDP and udp_servers == [g]:
            read = counters.get("Udp.InDatagrams", 0) + counters.get("Udp6.InDatagrams", 0)
            udp_rates = ((read + shape.udp_drops) / duration, read / duration)
        elif g.role is Role.UDP:
            notes.append(
                "datagram rates unknown: the namespace's UDP counters cannot be split between its UDP sockets"
            )
        workload = _workload(g, cls, shape, symptoms, duration, udp_rates)
        process = next((owners[i] for i in [s.inode for s in g.listeners] + g.inodes if i in owners), None)
        prefix = "tcp" if g.role is not Role.UDP else "udp"
        label = {Role.SERVER: "server", Role.CLIENT: "client ->", Role.UDP: "->" if len(g.key) == 4 else ""}[
            g.role
        ]
        key = " ".join(p for p in (prefix, label, g.endpoint) if p)
        services.append(
            ServiceSignature(
                key=key,
                role=g.role,
                endpoint=g.endpoint,
                process=process,
                service_class=cls,
                shape=shape,
                path=path,
                workload=workload,
                symptoms=symptoms,
                notes=notes,
            )
        )
    blamed_udp = any(s.shape.udp_drops for s in services)
    udp_errors = counters.get("Udp.RcvbufErrors", 0) + counters.get("Udp6.RcvbufErrors", 0)
    if udp_errors and not blamed_udp:
        unblamed.append(
            _symptom(
                "udp-receive-buffer-errors",
                (f"Udp.RcvbufErrors +{udp_errors} in {duration:.3g} s on sockets that are gone"),
            )
        )
    services.sort(key=lambda s: (-len(s.symptoms), s.role.value, s.key))
    return Observation(
        netns=after.netns,
        wall_time=before.wall_time,
        duration=round(duration, 3),
        services=services,
        symptoms=unblamed,
        counters=counters,
        sockets=after.count_by_state(),
        snapshot_seconds=after.took,
    )
