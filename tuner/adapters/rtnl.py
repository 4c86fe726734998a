"""The one module that speaks rtnetlink (through pyroute2) for the sandbox: namespaces, links, addresses,
neighbours and netem qdiscs. pyroute2's types never leave this file.

Namespace-local calls act on the network namespace of the *calling process*: the sandbox runs them
in its children that entered a namespace, never in the parent. Netlink errors come out as OSError
with the kernel's errno; results are plain values and our dataclasses.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT

__all__ = [
    "LinkCounters",
    "NetemSettings",
    "QdiscCounters",
    "add_ipv4",
    "add_netem",
    "add_veth_pair",
    "change_netem",
    "create_netns",
    "delete_link",
    "link_counters",
    "link_index",
    "link_mac",
    "netem_counters",
    "netem_options",
    "netem_supported",
    "qdisc_counters",
    "remove_netns",
    "set_link",
    "set_neighbour",
]


@dataclass(frozen=True)
class LinkCounters:
    """A device's own counters (IFLA_STATS64)."""

    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_dropped: int
    tx_dropped: int


@dataclass(frozen=True)
class QdiscCounters:
    packets: int
    bytes: int
    drops: int
    backlog: int


@dataclass(frozen=True)
class NetemSettings:
    """What one netem qdisc gets: a one-way delay, Bernoulli loss, a rate and a packet limit."""

    delay_us: int
    loss_percent: float
    rate_bps: int | None
    limit: int
    jitter_us: int = 0


@contextlib.contextmanager
def _netlink_errors(action: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as exc:
        code = int(getattr(exc, "code", 0) or errno.EIO)
        raise OSError(code, f"{action}: {os.strerror(code)}") from None


def create_netns(name: str) -> None:
    """Create the named namespace /run/netns/NAME (done in a forked child: the caller stays put)."""
    with _netlink_errors(f"create namespace {name}"):
        pr_netns.create(name)


def remove_netns(name: str) -> None:
    """Unmount and unlink /run/netns/NAME; the namespace dies with its last process."""
    with _netlink_errors(f"remove namespace {name}"):
        pr_netns.remove(name)


def link_index(ifname: str) -> int:
    with IPRoute() as ipr, _netlink_errors(f"look up {ifname}"):
        found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise OSError(errno.ENODEV, f"no device {ifname}")
    return int(found[0])


def set_link(ifname: str, *, up: bool = True, txqlen: int | None = None, mtu: int | None = None) -> None:
    attrs: dict[str, object] = {"state": "up" if up else "down"}
    if txqlen is not None:
        attrs["txqlen"] = txqlen
    if mtu is not None:
        attrs["mtu"] = mtu
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"set {ifname}"):
        ipr.link("set", index=index, **attrs)


def add_veth_pair(
    local: str,
    peer: str,
    peer_netns: str | None = None,
    *,
    local_mac: str | None = None,
    peer_mac: str | None = None,
) -> None:
    """A veth pair whose ``peer`` end is created directly inside the named namespace ``peer_netns``
    (or next to ``local`` when it is None)."""
    peer_attrs: dict[str, object] = {"ifname": peer}
    if peer_netns is not None:
        peer_attrs["net_ns_fd"] = peer_netns
    local_attrs: dict[str, object] = {}
    if peer_mac:
        peer_attrs["address"] = peer_mac
    if local_mac:
        local_attrs["address"] = local_mac
    with IPRoute() as ipr, _netlink_errors(f"add veth {local}/{peer}"):
        ipr.link("add", ifname=local, kind="veth", peer=peer_attrs, **local_attrs)


def delete_link(ifname: str) -> None:
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"delete {ifname}"):
        ipr.link("del", index=index)


def add_ipv4(ifname: str, address: str, prefixlen: int) -> None:
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"add {address}/{prefixlen} to {ifname}"):
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)


def link_mac(ifname: str) -> str:
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"read {ifname}"):
        msg = ipr.get_links(index)[0]
    return str(msg.get_attr("IFLA_ADDRESS"))


def set_neighbour(ifname: str, address: str, mac: str) -> None:
    """A permanent neighbour entry: ``address`` is reached at ``mac`` (no ARP)."""
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"set neighbour {address} on {ifname}"):
        ipr.neigh("replace", dst=address, lladdr=mac, ifindex=index, state=NUD_PERMANENT)


def link_counters(ifname: str) -> LinkCounters:
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"read counters of {ifname}"):
        msg = ipr.get_links(index)[0]
    stats = msg.get_attr("IFLA_STATS64") or msg.get_attr("IFLA_STATS")
    return LinkCounters(
        *(
            int(stats[k])
            for k in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")
        )
    )


def _netem_kwargs(settings: NetemSettings) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "delay": settings.delay_us,
        "loss": settings.loss_percent,
        "limit": settings.limit,
    }
    if settings.jitter_us:
        kwargs["jitter"] = settings.jitter_us
    if settings.rate_bps:
        kwargs["rate"] = f"{int(settings.rate_bps)}bit"
    return kwargs


def add_netem(ifname: str, settings: NetemSettings) -> None:
    """netem as the root qdisc of ``ifname`` (egress). ENOENT means the kernel has no sch_netem."""
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"add netem to {ifname}"):
        ipr.tc("add", "netem", index, 0x10000, **_netem_kwargs(settings))


def change_netem(ifname: str, settings: NetemSettings) -> None:
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"change netem on {ifname}"):
        ipr.tc("change", "netem", index, 0x10000, **_netem_kwargs(settings))


def qdisc_counters(ifname: str, kind: str) -> QdiscCounters:
    """Counters of the ``kind`` qdisc on ``ifname`` (packets and bytes sent, drops, backlog)."""
    index = link_index(ifname)
    with IPRoute() as ipr, _netlink_errors(f"read qdisc of {ifname}"):
        for msg in ipr.get_qdiscs(index=index):
            if msg.get_attr("TCA_KIND") != kind:
                continue
            stats2 = msg.get_attr("TCA_STATS2")
            b = stats2.get_attr("TCA_STATS_BASIC") if stats2 else None
            q = stats2.get_attr("TCA_STATS_QUEUE") if stats2 else None
            if b is None or q is None:
                st = msg.get_attr("TCA_STATS")
                return QdiscCounters(
                    int(st["packets"]), int(st["bytes"]), int(st["drops"]), int(st["backlog"])
                )
            return QdiscCounters(int(b["packets"]), int(b["bytes"]), int(q["drops"]), int(q["backlog"]))
    raise OSError(errno.ENOENT, f"no {kind} qdisc on {ifname}")


def netem_counters(ifname: str) -> QdiscCounters:
    return qdisc_counters(ifname, "netem")


def netem_options(settings: NetemSettings) -> dict[str, int]:
    """The netem options as pyroute2 encodes them for the kernel (delay in ticks, loss and rate
    scaled), without sending anything: lets tests check the translation on kernels without netem."""
    from pyroute2.netlink.rtnl.tcmsg.sched_netem import get_parameters as _netem_parameters

    opts = _netem_parameters(_netem_kwargs(settings))
    out = {k: int(opts[k]) for k in ("delay", "limit", "loss", "jitter")}
    for name, value in opts.get("attrs", []):
        if name == "TCA_NETEM_RATE":
            out["rate_bytes_per_s"] = int(value["rate"])
    return out


def netem_supported(ifname: str) -> bool:
    """Whether this kernel accepts a netem qdisc, tried on ``ifname`` and removed again.

    False when the qdisc kind is unknown (no sch_netem: ENOENT, or EOPNOTSUPP/EINVAL from old kernels);
    any other failure is raised.
    """
    index = link_index(ifname)
    with IPRoute() as ipr:
        try:
            ipr.tc("add", "netem", index, 0x10000, delay=1000, limit=1000)
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
                return False
            raise OSError(exc.code, f"try netem on {ifname}: {os.strerror(exc.code)}") from None
        with _netlink_errors(f"remove netem from {ifname}"):
            ipr.tc("del", "netem", index, 0x10000)
    return True
