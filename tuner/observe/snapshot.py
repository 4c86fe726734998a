"""A snapshot of a network namespace: every TCP/UDP socket, the kernel counters, a few live sysctls.

``take_snapshot(netns=...)`` reads the sockets inside that namespace (in a child, through
tuner.netns.run_in_netns) and attributes them to processes from the host's /proc in the caller.
A snapshot is plain data and round-trips through JSON, so recorded snapshots serve as test fixtures.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.adapters.procs import SocketOwners
from tuner.adapters.sockdiag import LISTEN_STATES, SockDiag
from tuner.kernel import Owner, Proto, SocketRecord, TcpState
from tuner.knobs import CATALOGUE, SysctlTree, json_value
from tuner.logs import get_logger
from tuner.netns import run_in_netns
from tuner.observe.counters import Counters, read_counters

__all__ = [
    "SNAPSHOT_SYSCTLS",
    "Snapshot",
    "attribute",
    "collect",
    "gc_paused",
    "read_host_sysctls",
    "read_sysctls",
    "representative_inodes",
    "sample_listeners",
    "take_snapshot",
]

log = get_logger(__name__)

# live values the signature compares against (catalogue names)
SNAPSHOT_SYSCTLS = (
    "net.ipv4.ip_local_port_range",
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_syncookies",
    "net.core.rmem_max",
    "net.core.rmem_default",
    "net.core.wmem_max",
)


@dataclass
class Snapshot:
    """Sockets and counters of one namespace at one moment (``taken_at`` is CLOCK_MONOTONIC)."""

    taken_at: float
    wall_time: float
    netns: str | None
    sockets: list[SocketRecord]
    counters: Counters
    sysctls: dict[str, Any] = field(default_factory=dict)
    owners: dict[int, Owner] = field(default_factory=dict)  # inode -> owner, where known
    took: float = 0.0  # seconds spent reading the sockets

    def owner(self, sock: SocketRecord) -> Owner | None:
        return self.owners.get(sock.inode)

    def count_by_state(self) -> dict[str, int]:
        counts: dict[tuple[bool, int], int] = {}
        tcp = Proto.TCP
        for s in self.sockets:  # keyed by plain values: hashing enum members is slow at 10,000s
            key = (s.proto is tcp, s.state._value_)
            counts[key] = counts.get(key, 0) + 1
        named = {f"{'tcp' if is_tcp else 'udp'}.{TcpState(v).name}": n for (is_tcp, v), n in counts.items()}
        return dict(sorted(named.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "wall_time": self.wall_time,
            "netns": self.netns,
            "took": self.took,
            "sysctls": {k: json_value(v) for k, v in self.sysctls.items()},
            "counters": dict(self.counters),
            "owners": {str(i): o.to_dict() for i, o in self.owners.items()},
            "sockets": [s.to_dict() for s in self.sockets],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Snapshot:
        return cls(
            taken_at=float(d["taken_at"]),
            wall_time=float(d.get("wall_time", 0.0)),
            netns=d.get("netns"),
            sockets=[SocketRecord.from_dict(s) for s in d["sockets"]],
            counters={k: int(v) for k, v in d.get("counters", {}).items()},
            sysctls={k: tuple(v) if isinstance(v, list) else v for k, v in d.get("sysctls", {}).items()},
            owners={int(i): Owner.from_dict(o) for i, o in d.get("owners", {}).items()},
            took=float(d.get("took", 0.0)),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        return cls.from_dict(json.loads(path.read_text()))


def read_sysctls(names: Iterable[str] = SNAPSHOT_SYSCTLS, tree: SysctlTree | None = None) -> dict[str, Any]:
    tree = tree or SysctlTree()
    out: dict[str, Any] = {}
    for name in names:
        value = tree.read(CATALOGUE[name])
        if value is not None:
            out[name] = value
    return out


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic-GC passes while tens of thousands of young, acyclic objects are made: a collection
    in the middle would traverse them all (and every older snapshot) for nothing. Nested use is fine."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def collect(diag: SockDiag | None = None, *, netns_name: str | None = None) -> Snapshot:
    """Sockets, counters and sysctls of the calling process's namespace (no process attribution)."""
    own = diag is None
    diag = diag or SockDiag()
    try:
        with gc_paused():
            start = time.monotonic()
            wall = time.time()
            sockets = diag.dump()
            took = time.monotonic() - start
    finally:
        if own:
            diag.close()
    return Snapshot(
        taken_at=start,
        wall_time=wall,
        netns=netns_name,
        sockets=sockets,
        counters=read_counters(),
        sysctls=read_sysctls(),
        took=took,
    )


def sample_listeners(diag: SockDiag) -> list[SocketRecord]:
    """The LISTEN sockets only, without details: cheap enough to poll for accept-queue peaks."""
    return diag.dump(protos=(Proto.TCP,), states=LISTEN_STATES, details=False)


def attribute(snapshot: Snapshot, owners: SocketOwners, inodes: Iterable[int] | None = None) -> None:
    """Fill ``snapshot.owners`` for ``inodes`` (default: the sockets a signature names a process for:
    listeners, UDP sockets, and one socket per remote service)."""
    if inodes is None:
        inodes = representative_inodes(snapshot.sockets)
    snapshot.owners.update(owners.lookup(inodes))


def representative_inodes(sockets: Iterable[SocketRecord]) -> set[int]:
    sockets = list(sockets)
    listen, udp = TcpState.LISTEN, Proto.UDP
    wanted = {s.inode for s in sockets if s.inode and (s.state is listen or s.proto is udp)}
    server_ports = {s.local_port for s in sockets if s.state is listen}
    remotes: set[tuple[str, int]] = set()
    for s in sockets:
        if not s.inode or s.local_port in server_ports or s.proto is udp:
            continue  # accepted connections are named by their listener
        if (s.remote, s.remote_port) not in remotes:
            remotes.add((s.remote, s.remote_port))
            wanted.add(s.inode)
    return wanted


def read_host_sysctls() -> dict[str, Any]:
    return read_sysctls([n for n in SNAPSHOT_SYSCTLS if CATALOGUE[n].host_only])


def take_snapshot(
    netns: str | None = None, *, owners: SocketOwners | None = None, attribute_all: bool = False
) -> Snapshot:
    """A snapshot of ``netns`` (None: the caller's namespace), with process attribution."""
    if netns is None:
        snap = collect()
    else:
        snap = run_in_netns(netns, collect, netns_name=netns)
        for name, value in read_host_sysctls().items():  # host-wide values are not visible inside a netns
            snap.sysctls.setdefault(name, value)
    attribute(snap, owners or SocketOwners(), [s.inode for s in snap.sockets] if attribute_all else None)
    log.debug("observe.snapshot", netns=netns, sockets=len(snap.sockets), took_ms=round(snap.took * 1e3, 1))
    return snap
