"""The socket options of an Assignment, applied to a probe's own sockets at the right moment.

Which option is which comes from the knob catalogue (``Knob.sockopt``); nothing is re-declared here.

When each option is set:
- buffers (``SO_RCVBUF``/``SO_SNDBUF`` and the emulated host defaults) before ``listen()`` or
  ``connect()``: the window scale is fixed at the SYN, and accepted sockets inherit the listener's;
- the other TCP options (``TCP_NODELAY``, ``TCP_CONGESTION``, ``TCP_NOTSENT_LOWAT``, ...) on the
  client before ``connect()``, on the listener and again on every accepted socket;
- the dead-peer options (``SO_KEEPALIVE``, ``TCP_KEEP*``, ``TCP_USER_TIMEOUT``) on every socket, or,
  where a probe has a surviving side (keepalive), on the survivor's sockets only;
- ``TCP_QUICKACK`` is not sticky: probes that read call :meth:`SocketOptions.after_read`.

Host-only limits are never written: their effect is emulated per socket as root with
``SO_RCVBUFFORCE``/``SO_SNDBUFFORCE``:
- ``SO_RCVBUF = R`` with ``net.core.rmem_max = M`` gives the kernel's ``min(R, M)``, doubled, exactly as
  ``setsockopt(SO_RCVBUF)`` would under that limit (M is the assignment's, else the host's live value);
- ``net.core.rmem_default = D`` gives non-TCP sockets (UDP) a receive buffer of D bytes, as a fresh
  socket would get (the kernel doubles a forced value, so D/2 is passed). TCP sockets take their default
  from ``net.ipv4.tcp_rmem`` instead, so the host defaults do not touch them. Same for the send side.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from tuner.knobs import SysctlTree, Value, as_int, get_knob

__all__ = [
    "DEAD_PEER_KNOBS",
    "EMULATED_HOST_KNOBS",
    "SO_RCVBUFFORCE",
    "SO_SNDBUFFORCE",
    "HostLimits",
    "SocketOptions",
]

SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

DEAD_PEER_KNOBS = frozenset(
    {"SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT"}
)
_BUFFER_KNOBS = frozenset({"SO_RCVBUF", "SO_SNDBUF"})
_STICKY_EXCLUDED = frozenset({"TCP_QUICKACK"})
EMULATED_HOST_KNOBS = (
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
)


@dataclass(frozen=True)
class HostLimits:
    """The host's buffer limits, used where the assignment does not give its own."""

    rmem_max: int = 212992
    wmem_max: int = 212992
    rmem_default: int = 212992
    wmem_default: int = 212992

    @classmethod
    def read(cls, tree: SysctlTree | None = None) -> HostLimits:
        tree = tree or SysctlTree()
        values = {}
        for name in EMULATED_HOST_KNOBS:
            live = tree.read(get_knob(name))
            if isinstance(live, int):
                values[name.rsplit(".", 1)[1]] = live
        return cls(**values)


def _raw(value: Value) -> int | bytes:
    return value.encode() if isinstance(value, str) else as_int(value)


@dataclass(frozen=True)
class SocketOptions:
    """The per-socket part of an assignment, ready to apply. Build it with :meth:`from_assignment`."""

    stream: tuple[tuple[int, int, int | bytes], ...] = ()  # (level, optname, raw value)
    dead_peer: tuple[tuple[int, int, int | bytes], ...] = ()
    rcvbuf_force: int | None = None  # value for SO_RCVBUFFORCE (the kernel doubles it)
    sndbuf_force: int | None = None
    udp_rcvbuf_force: int | None = None  # emulated rmem_default for non-TCP sockets
    udp_sndbuf_force: int | None = None
    backlog: int | None = None
    quickack: bool = False
    applied: Mapping[str, Value] = field(default_factory=dict)  # knob -> value, what these options stand for

    @classmethod
    def from_assignment(
        cls, assignment: Mapping[str, Value], limits: HostLimits | None = None
    ) -> SocketOptions:
        limits = limits or HostLimits()
        stream: list[tuple[int, int, int | bytes]] = []
        dead_peer: list[tuple[int, int, int | bytes]] = []
        applied: dict[str, Value] = {}
        for name, value in assignment.items():
            knob = get_knob(name)
            if not knob.is_socket_option or name in _BUFFER_KNOBS or name in _STICKY_EXCLUDED:
                continue
            assert knob.sockopt is not None
            level, opt = knob.sockopt
            (dead_peer if name in DEAD_PEER_KNOBS else stream).append((level, opt, _raw(value)))
            applied[name] = value
        rmem_max = as_int(assignment.get("net.core.rmem_max", limits.rmem_max))
        wmem_max = as_int(assignment.get("net.core.wmem_max", limits.wmem_max))
        rcv = sndb = udp_rcv = udp_snd = None
        if "SO_RCVBUF" in assignment:
            rcv = min(as_int(assignment["SO_RCVBUF"]), rmem_max)
            applied["SO_RCVBUF"] = assignment["SO_RCVBUF"]
        if "SO_SNDBUF" in assignment:
            sndb = min(as_int(assignment["SO_SNDBUF"]), wmem_max)
            applied["SO_SNDBUF"] = assignment["SO_SNDBUF"]
        if "net.core.rmem_default" in assignment:
            udp_rcv = max(1, as_int(assignment["net.core.rmem_default"]) // 2)
        if "net.core.wmem_default" in assignment:
            udp_snd = max(1, as_int(assignment["net.core.wmem_default"]) // 2)
        for name in EMULATED_HOST_KNOBS:
            if name in assignment:
                applied[name] = assignment[name]
        backlog = assignment.get("backlog")
        if backlog is not None:
            applied["backlog"] = backlog
        quickack = bool(assignment.get("TCP_QUICKACK", False))
        if "TCP_QUICKACK" in assignment:
            applied["TCP_QUICKACK"] = assignment["TCP_QUICKACK"]
        return cls(
            tuple(stream),
            tuple(dead_peer),
            rcv,
            sndb,
            udp_rcv,
            udp_snd,
            as_int(backlog) if backlog is not None else None,
            quickack,
            applied,
        )

    @staticmethod
    def unemulated(assignment: Mapping[str, Value]) -> list[str]:
        """Host knobs of ``assignment`` that a probe can neither write nor emulate per socket."""
        return sorted(n for n in assignment if get_knob(n).host_only and n not in EMULATED_HOST_KNOBS)

    # --- applying -----------------------------------------------------------------------------

    def _buffers(self, sock: socket.socket) -> None:
        udp = sock.type == socket.SOCK_DGRAM
        rcv = self.rcvbuf_force if self.rcvbuf_force is not None else (self.udp_rcvbuf_force if udp else None)
        snd = self.sndbuf_force if self.sndbuf_force is not None else (self.udp_sndbuf_force if udp else None)
        if rcv is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcv)
        if snd is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, snd)

    def _set_all(self, sock: socket.socket, options: tuple[tuple[int, int, int | bytes], ...]) -> None:
        for level, opt, raw in options:
            sock.setsockopt(level, opt, raw)

    def client(self, sock: socket.socket, *, dead_peer: bool = True) -> None:
        """A TCP client socket, before ``connect()``."""
        self._buffers(sock)
        self._set_all(sock, self.stream)
        if dead_peer:
            self._set_all(sock, self.dead_peer)

    def listener(self, sock: socket.socket) -> None:
        """A TCP listening socket, before ``listen()``."""
        self._buffers(sock)
        self._set_all(sock, self.stream)

    def accepted(self, sock: socket.socket, *, dead_peer: bool = True) -> None:
        """A socket returned by ``accept()``."""
        self._set_all(sock, self.stream)
        if dead_peer:
            self._set_all(sock, self.dead_peer)
        if self.quickack:
            self.after_read(sock)

    def datagram(self, sock: socket.socket) -> None:
        """A UDP socket, before ``bind()``/``connect()``."""
        self._buffers(sock)

    def after_read(self, sock: socket.socket) -> None:
        """Re-arm TCP_QUICKACK (the kernel clears it) when the assignment turns it on."""
        if self.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def listen(self, sock: socket.socket, default_backlog: int) -> int:
        backlog = self.backlog if self.backlog is not None else default_backlog
        sock.listen(backlog)
        return backlog
