"""The knob catalogue: every setting tuner knows, declared as data.

Nothing outside this table can ever be read or written: profiles, plans and the applier look knobs up
here by exact name, and a sysctl's ``/proc/sys`` path is derived only from a catalogue entry.
"""

from __future__ import annotations

import difflib
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import MappingProxyType

from tuner.errors import KnobError
from tuner.knobs.domains import INT_MAX, Algorithm, Domain, Flag, IntChoice, IntRange, OrderedTuple, Value

__all__ = ["CATALOGUE", "Knob", "Scope", "get_knob", "knobs_by_scope"]

KiB = 1024
MiB = 1024 * KiB
UINT_MAX = 2**32 - 1


class Kind(Enum):
    """How a knob is set: a sysctl file, a ``setsockopt`` option, or the ``listen(2)`` backlog."""

    SYSCTL = "sysctl"
    SOCKOPT = "sockopt"
    LISTEN = "listen"  # the backlog argument of listen(2)


class Scope(Enum):
    """Where a value holds. Derived from the knob (:attr:`Knob.scope`), never declared separately:
    a socket setting is one the application sets; a sysctl is host-wide or per namespace."""

    HOST = "host"  # one value for the whole machine; never written during a search
    NETNS = "netns"  # per network namespace; safe to try inside a sandbox
    SOCKET = "socket"  # set by the application on its own sockets


@dataclass(frozen=True)
class Knob:
    name: str
    kind: Kind
    domain: Domain
    description: str
    sockopt: tuple[int, int] | None = None  # (level, optname) for SOCKOPT knobs
    host_only: bool = False  # a sysctl absent or read-only inside a network namespace
    # what the kernel does while a socket option is unset, where that is a value on the option's own
    # scale: the sysctl whose value applies (TCP_KEEPIDLE: net.ipv4.tcp_keepalive_time), or a number
    # (math.inf: no limit). None: unset is a mechanism of its own (SO_RCVBUF unset: autotuning).
    unset: str | float | None = None

    def __post_init__(self) -> None:
        if self.host_only and self.kind is not Kind.SYSCTL:
            raise ValueError(f"{self.name}: only a sysctl can be host-only")
        if self.unset is not None and self.kind is not Kind.SOCKOPT:
            raise ValueError(f"{self.name}: only a socket option can be unset")
        if (self.sockopt is not None) != (self.kind is Kind.SOCKOPT):
            raise ValueError(f"{self.name}: a socket option, and only one, has (level, optname)")

    @property
    def is_sysctl(self) -> bool:
        return self.kind is Kind.SYSCTL

    @property
    def is_socket_option(self) -> bool:
        """A ``setsockopt`` option (not the listen backlog)."""
        return self.kind is Kind.SOCKOPT

    @property
    def set_by_application(self) -> bool:
        """A socket setting (option or backlog): the application sets it, tuner never applies it."""
        return self.kind is not Kind.SYSCTL

    @property
    def per_netns(self) -> bool:
        """A sysctl each network namespace has its own copy of: safe to write in a sandbox."""
        return self.kind is Kind.SYSCTL and not self.host_only

    @property
    def scope(self) -> Scope:
        if self.kind is not Kind.SYSCTL:
            return Scope.SOCKET
        return Scope.HOST if self.host_only else Scope.NETNS

    @property
    def section(self) -> str:
        """The profile section it belongs in: ``sysctl`` for kernel settings, ``socket`` for the rest."""
        return "sysctl" if self.is_sysctl else "socket"

    def validate(self, value: object) -> Value:
        return self.domain.validate(self.name, value)

    def sysctl_path(self, root: Path) -> Path:
        """The file of this sysctl under ``root`` (normally /proc/sys). Only catalogue names get here."""
        if not self.is_sysctl:
            raise KnobError(self.name, "is not a sysctl")
        return root.joinpath(*self.name.split("."))


def _sysctl(name: str, scope: Scope, domain: Domain, description: str) -> Knob:
    return Knob(name, Kind.SYSCTL, domain, description, host_only=scope is Scope.HOST)


def _sockopt(
    name: str, level: int, opt: int, domain: Domain, description: str, unset: str | float | None = None
) -> Knob:
    return Knob(name, Kind.SOCKOPT, domain, description, sockopt=(level, opt), unset=unset)


_TCP = socket.IPPROTO_TCP
_SOL = socket.SOL_SOCKET
_BUF = IntRange(4096, INT_MAX, search_lo=64 * KiB, search_hi=256 * MiB, log=True, unit="bytes")
_BUF_DEFAULT = IntRange(4096, INT_MAX, search_lo=64 * KiB, search_hi=16 * MiB, log=True, unit="bytes")
_TCP_MEM_TRIPLE = OrderedTuple(
    ("min", "default", "max"),
    1,
    INT_MAX,
    search_lo=64 * KiB,
    search_hi=64 * MiB,
    unit="bytes",
    search_parts=(2,),
)
_PAGES_TRIPLE = OrderedTuple(("min", "pressure", "max"), 1, INT_MAX, unit="pages")
_MODES_012 = ((0, "off"), (1, "on"), (2, "always"))

_KNOBS: tuple[Knob, ...] = (
    # --- per network namespace ------------------------------------------------------------------
    _sysctl(
        "net.core.somaxconn",
        Scope.NETNS,
        IntRange(1, INT_MAX, search_lo=16, search_hi=65535, log=True),
        "upper limit for any listen() backlog",
    ),
    _sysctl(
        "net.ipv4.tcp_rmem",
        Scope.NETNS,
        _TCP_MEM_TRIPLE,
        "TCP receive buffer min/default/max; autotuning grows up to max",
    ),
    _sysctl(
        "net.ipv4.tcp_wmem",
        Scope.NETNS,
        _TCP_MEM_TRIPLE,
        "TCP send buffer min/default/max; autotuning grows up to max",
    ),
    _sysctl(
        "net.ipv4.tcp_max_syn_backlog",
        Scope.NETNS,
        IntRange(1, INT_MAX, search_lo=128, search_hi=65536, log=True),
        "half-open connections (SYN_RECV) kept per listener",
    ),
    _sysctl(
        "net.ipv4.tcp_keepalive_time",
        Scope.NETNS,
        IntRange(1, 32767, search_lo=1, search_hi=7200, log=True, unit="s"),
        "idle time before the first keepalive probe",
    ),
    _sysctl(
        "net.ipv4.tcp_keepalive_intvl",
        Scope.NETNS,
        IntRange(1, 32767, search_lo=1, search_hi=75, log=True, unit="s"),
        "time between keepalive probes",
    ),
    _sysctl(
        "net.ipv4.tcp_keepalive_probes",
        Scope.NETNS,
        IntRange(1, 127, search_lo=1, search_hi=9),
        "unanswered keepalive probes before the connection is dropped",
    ),
    _sysctl(
        "net.ipv4.tcp_congestion_control",
        Scope.NETNS,
        Algorithm(),
        "default congestion-control algorithm for new connections",
    ),
    _sysctl(
        "net.ipv4.tcp_notsent_lowat",
        Scope.NETNS,
        # the kernel's default is UINT_MAX ("no limit"), so this one range goes past INT_MAX
        IntRange(1, UINT_MAX, search_lo=16 * KiB, search_hi=4 * MiB, log=True, unit="bytes"),
        "unsent bytes allowed in the send queue before the socket stops being writable",
    ),
    _sysctl(
        "net.ipv4.tcp_slow_start_after_idle",
        Scope.NETNS,
        Flag(),
        "restart congestion window from slow start after an idle period",
    ),
    _sysctl(
        "net.ipv4.tcp_fastopen",
        Scope.NETNS,
        IntChoice(((0, "off"), (1, "client"), (2, "server"), (3, "client and server"))),
        "TCP Fast Open: data in the SYN",
    ),
    _sysctl(
        "net.ipv4.tcp_fin_timeout",
        Scope.NETNS,
        IntRange(1, 3600, search_lo=5, search_hi=120, log=True, unit="s"),
        "time an orphaned connection stays in FIN_WAIT_2",
    ),
    _sysctl(
        "net.ipv4.tcp_tw_reuse",
        Scope.NETNS,
        IntChoice(((0, "off"), (1, "on"), (2, "loopback only"))),
        "reuse TIME_WAIT sockets for new outgoing connections",
    ),
    _sysctl(
        "net.ipv4.tcp_syncookies",
        Scope.NETNS,
        IntChoice(((0, "off"), (1, "on overflow"), (2, "always"))),
        "answer SYNs with cookies when the SYN queue overflows",
    ),
    _sysctl(
        "net.ipv4.tcp_mtu_probing",
        Scope.NETNS,
        IntChoice(((0, "off"), (1, "after an ICMP black hole"), (2, "always"))),
        "packetization-layer path MTU discovery",
    ),
    _sysctl(
        "net.ipv4.ip_local_port_range",
        Scope.NETNS,
        OrderedTuple(("low", "high"), 1024, 65535, strict=True, log=False),
        "ephemeral ports used for outgoing connections",
    ),
    _sysctl(
        "net.ipv4.tcp_no_metrics_save", Scope.NETNS, Flag(), "do not cache ssthresh/RTT of closed connections"
    ),
    # --- host only (absent or read-only inside a namespace) ----------------------------------------
    _sysctl(
        "net.core.rmem_max", Scope.HOST, _BUF, "largest receive buffer an application may set (SO_RCVBUF)"
    ),
    _sysctl("net.core.wmem_max", Scope.HOST, _BUF, "largest send buffer an application may set (SO_SNDBUF)"),
    _sysctl(
        "net.core.rmem_default", Scope.HOST, _BUF_DEFAULT, "receive buffer of non-TCP sockets by default"
    ),
    _sysctl("net.core.wmem_default", Scope.HOST, _BUF_DEFAULT, "send buffer of non-TCP sockets by default"),
    _sysctl(
        "net.core.netdev_max_backlog",
        Scope.HOST,
        IntRange(1, INT_MAX, search_lo=1000, search_hi=250000, log=True),
        "packets queued per CPU before the stack processes them",
    ),
    _sysctl("net.ipv4.tcp_mem", Scope.HOST, _PAGES_TRIPLE, "total TCP memory thresholds, in pages"),
    _sysctl("net.ipv4.udp_mem", Scope.HOST, _PAGES_TRIPLE, "total UDP memory thresholds, in pages"),
    # --- set by the application on its sockets ----------------------------------------------------
    _sockopt("TCP_NODELAY", _TCP, socket.TCP_NODELAY, Flag(), "send small writes at once (disable Nagle)"),
    _sockopt(
        "SO_RCVBUF",
        _SOL,
        socket.SO_RCVBUF,
        IntRange(1024, INT_MAX // 2, search_lo=16 * KiB, search_hi=64 * MiB, log=True, unit="bytes"),
        "fixed receive buffer (the kernel doubles it; disables autotuning)",
    ),
    _sockopt(
        "SO_SNDBUF",
        _SOL,
        socket.SO_SNDBUF,
        IntRange(1024, INT_MAX // 2, search_lo=16 * KiB, search_hi=64 * MiB, log=True, unit="bytes"),
        "fixed send buffer (the kernel doubles it; disables autotuning)",
    ),
    Knob(
        "backlog",
        Kind.LISTEN,
        IntRange(1, INT_MAX, search_lo=8, search_hi=65535, log=True),
        "listen() backlog: connections waiting for accept (capped by net.core.somaxconn)",
    ),
    _sockopt("SO_KEEPALIVE", _SOL, socket.SO_KEEPALIVE, Flag(), "send keepalive probes on idle connections"),
    _sockopt(
        "TCP_KEEPIDLE",
        _TCP,
        socket.TCP_KEEPIDLE,
        IntRange(1, 32767, search_lo=1, search_hi=7200, log=True, unit="s"),
        "idle time before the first probe",
        unset="net.ipv4.tcp_keepalive_time",
    ),
    _sockopt(
        "TCP_KEEPINTVL",
        _TCP,
        socket.TCP_KEEPINTVL,
        IntRange(1, 32767, search_lo=1, search_hi=75, log=True, unit="s"),
        "time between probes",
        unset="net.ipv4.tcp_keepalive_intvl",
    ),
    _sockopt(
        "TCP_KEEPCNT",
        _TCP,
        socket.TCP_KEEPCNT,
        IntRange(1, 127, search_lo=1, search_hi=9),
        "unanswered probes before the connection is dropped",
        unset="net.ipv4.tcp_keepalive_probes",
    ),
    _sockopt(
        "TCP_USER_TIMEOUT",
        _TCP,
        getattr(socket, "TCP_USER_TIMEOUT", 18),
        IntRange(0, INT_MAX, search_lo=1000, search_hi=600000, log=True, unit="ms"),
        "longest time sent data may stay unacknowledged before the connection is dropped",
        unset=math.inf,  # 0, the default: sent data may wait for an acknowledgement forever
    ),
    _sockopt(
        "TCP_NOTSENT_LOWAT",
        _TCP,
        getattr(socket, "TCP_NOTSENT_LOWAT", 25),
        IntRange(1, INT_MAX, search_lo=16 * KiB, search_hi=4 * MiB, log=True, unit="bytes"),
        "unsent bytes allowed before the socket stops being writable",
    ),
    _sockopt(
        "TCP_CONGESTION",
        _TCP,
        getattr(socket, "TCP_CONGESTION", 13),
        Algorithm(),
        "congestion-control algorithm of this socket",
    ),
    _sockopt(
        "TCP_QUICKACK",
        _TCP,
        getattr(socket, "TCP_QUICKACK", 12),
        Flag(),
        "acknowledge at once instead of delaying ACKs (not sticky: re-set after reads)",
    ),
)

CATALOGUE: Mapping[str, Knob] = MappingProxyType({k.name: k for k in _KNOBS})


def get_knob(name: object) -> Knob:
    """The catalogue entry for ``name``: an exact match, nothing else."""
    if not isinstance(name, str) or name not in CATALOGUE:
        close = difflib.get_close_matches(str(name), list(CATALOGUE), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "list the knobs with `tuner knobs`"
        raise KnobError(str(name), "is not a knob tuner knows", hint=hint)
    return CATALOGUE[name]


def knobs_by_scope(*scopes: Scope) -> tuple[Knob, ...]:
    return tuple(k for k in _KNOBS if k.scope in scopes)
