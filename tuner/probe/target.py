"""The target's baseline: the live settings of what is being tuned, to measure its "nothing set" case.

    target = read_target()            # the host
    target = read_target("web")       # the network namespace `ip netns` calls "web"
    target.sandbox_sysctls()          # written into BOTH sandbox namespaces before any measurement
    target.host_limits()              # host-only buffer limits, emulated per socket (never written)
    target.settings                   # every catalogue sysctl's baseline value, for the evidence

A fresh namespace starts with the kernel's defaults for a new namespace (plus what it inherits from the
host), not with the target's values: a search against it answers a question about another machine.
So every per-namespace sysctl of the catalogue is read in the target and copied into the sandbox;
host-only sysctls are read on the host (a namespace has none of its own) and emulated per socket.
``net.ipv4.tcp_no_metrics_save`` is not copied: the sandbox sets it so trials do not leak into each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from tuner.errors import InputError
from tuner.knobs import CATALOGUE, Scope, SysctlTree, Value, get_knob, json_value
from tuner.logs import get_logger
from tuner.netns import run_in_netns
from tuner.probe.sockopts import EMULATED_HOST_KNOBS, HostLimits

__all__ = ["CONGESTION", "NOT_COPIED", "TargetBaseline", "namespace_algorithms", "read_scope", "read_target"]

log = get_logger(__name__)

# per-namespace sysctls the sandbox owns (measurement hygiene), so the target's value is not copied
NOT_COPIED = frozenset({"net.ipv4.tcp_no_metrics_save"})
CONGESTION = "net.ipv4.tcp_congestion_control"
_ALLOWED = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"


def namespace_algorithms() -> frozenset[str]:
    """The congestion-control algorithms a network namespace may select (a host-wide list)."""
    try:
        with open(_ALLOWED) as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()


def read_scope(scope: Scope) -> dict[str, Value]:
    """Live values of the catalogue's sysctls of ``scope`` in the calling process's namespace."""
    tree = SysctlTree()
    out: dict[str, Value] = {}
    for knob in CATALOGUE.values():
        if knob.is_sysctl and knob.scope is scope:
            value = tree.read(knob)
            if value is not None:
                out[knob.name] = value
    return out


@dataclass(frozen=True)
class TargetBaseline:
    """The live sysctls of a target: ``source`` is "host" or "netns NAME"."""

    source: str
    netns: Mapping[str, Value] = field(default_factory=dict)  # per-namespace sysctls, read in the target
    host: Mapping[str, Value] = field(default_factory=dict)  # host-only sysctls, read on the host

    @property
    def settings(self) -> dict[str, Value]:
        return {**self.host, **self.netns}

    def sandbox_sysctls(self) -> dict[str, Value]:
        """The per-namespace values to write into both sandbox namespaces (a congestion control that a
        namespace may not select is left to :meth:`socket_emulation`)."""
        out = {k: v for k, v in self.netns.items() if k not in NOT_COPIED}
        if CONGESTION in out and out[CONGESTION] not in namespace_algorithms():
            del out[CONGESTION]
        return out

    def socket_emulation(self) -> dict[str, Value]:
        """Per-namespace values a sandbox namespace refuses, given to the probe's sockets instead: a
        congestion control outside tcp_allowed_congestion_control (a target namespace described rather
        than read, say cubic on a host that allows only reno and bbr), as TCP_CONGESTION, which root
        may set to any algorithm the kernel has."""
        cc = self.netns.get(CONGESTION)
        if cc is not None and cc not in namespace_algorithms():
            return {"TCP_CONGESTION": cc}
        return {}

    def emulated_sysctls(self) -> dict[str, Value]:
        """The per-namespace values :meth:`socket_emulation` stands for (what a read-back cannot show)."""
        return {CONGESTION: self.netns[CONGESTION]} if self.socket_emulation() else {}

    def host_limits(self) -> HostLimits:
        """The host-only buffer limits a socket gets in the target, for per-socket emulation."""
        values = {
            name.rsplit(".", 1)[1]: self.host[name]
            for name in EMULATED_HOST_KNOBS
            if isinstance(self.host.get(name), int)
        }
        return HostLimits(**values)  # type: ignore[arg-type]

    def with_values(self, values: Mapping[str, Value], source: str | None = None) -> TargetBaseline:
        """This baseline with some values replaced (validated), e.g. a documented stock-distro host's
        host-only limits for a target namespace on a machine whose own limits differ."""
        netns, host = dict(self.netns), dict(self.host)
        for name, value in values.items():
            knob = get_knob(name)
            if not knob.is_sysctl:
                raise InputError(f"{name} is not a sysctl: a baseline holds sysctls only")
            (host if knob.host_only else netns)[name] = knob.validate(value)
        return replace(self, netns=netns, host=host, source=source or self.source)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "settings": {k: json_value(v) for k, v in sorted(self.settings.items())},
        }


def read_target(netns: str | None = None) -> TargetBaseline:
    """The live baseline of the host (``netns`` None) or of the named network namespace."""
    host = read_scope(Scope.HOST)
    if netns is None:
        target = TargetBaseline("host", read_scope(Scope.NETNS), host)
    else:
        target = TargetBaseline(f"netns {netns}", run_in_netns(netns, read_scope, Scope.NETNS), host)
    log.info("target.baseline", source=target.source, knobs=len(target.settings))
    return target
