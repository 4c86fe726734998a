"""The emulated link between a sandbox's two namespaces: three backends behind one interface.

- ``none``: a bare veth pair (the NetworkPath asks for nothing).
- ``netem``: the veth pair with the kernel's netem qdisc on each end (delay, loss, rate, limit).
- ``tun``: a TUN device in each namespace joined by the userspace delay line
  (:mod:`tuner.sandbox.delayline`), for kernels without ``sch_netem``.

:func:`plan_link` decides (purely) which backend serves a NetworkPath and with what effective settings.
A link is built in two halves: :meth:`PathLink.prepare` runs in a child *inside* each namespace
(client first, then server), :meth:`PathLink.collect` in the parent right after it; then
:meth:`PathLink.start` in the parent. Defaults, documented once:

- the delay line always has a rate cap (uncapped, the TUN ring overflows and the run is invalid):
  :data:`DEFAULT_RATE_BPS` when the NetworkPath sets none;
- the bottleneck queue, when the NetworkPath sets none, holds one bandwidth-delay product plus
  :data:`QUEUE_SLACK_S` of the rate, at least :data:`MIN_QUEUE_PACKETS` packets (MTU-sized). One BDP
  lets a single loss-based flow keep the link busy in theory; the slack absorbs the bursts a sender's
  segmentation offload and the delay line's batched service add: on short paths one BDP is only a few
  64 KiB super-packets (at 1 Gbit/s and 1 ms RTT, one cubic stream beside two CPU burners: a one-BDP
  queue gave 90.7% of the cap, BDP + 2 ms 97.7%, run back to back: bench/results/sandbox_path_queue.md).
  Real bottleneck buffers are larger still.
- the delay line takes its own round-trip overhead (two TUN crossings each way, its wake-ups: ~0.1 ms)
  off its delay, measured with ICMP echoes when the path is built (:meth:`TunLink._trim_overhead`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass, replace
from typing import Any, Protocol

from tuner.adapters import rtnl as nl
from tuner.adapters.procs import steal_seconds
from tuner.errors import SandboxError
from tuner.logs import get_logger
from tuner.netns import ChildFailed, NetnsChild, run_in_netns
from tuner.sandbox.delayline import (
    LATE_BUCKETS,
    PROFILE_ENV,
    DirectionSnapshot,
    LineParams,
    LineStats,
    late_percentile,
    run_line,
)
from tuner.sandbox.echo import echo_rtts
from tuner.sandbox.health import LATE_MS, PathHealth, judge
from tuner.sandbox.layout import ADDRESSES, DEAD_MAC, IFNAME, MACS, PREFIXLEN, Side, peer_of
from tuner.sandbox.tun import open_tun, read_dev_counters
from tuner.workload import NetworkPath

__all__ = [
    "BACKENDS",
    "DEFAULT_RATE_BPS",
    "MIN_QUEUE_PACKETS",
    "MTU",
    "QUEUE_SLACK_S",
    "TUN_TXQLEN",
    "LinkPlan",
    "PathLink",
    "default_queue",
    "make_link",
    "netem_probe",
    "netem_settings",
    "plan_link",
]

log = get_logger(__name__)

BACKENDS = ("none", "netem", "tun")
DEFAULT_RATE_BPS = 200e6  # the delay line's cap when the NetworkPath has none (the old line's ceiling on 2
# busy cores; with offloads it holds 3 Gbit/s: bench/sandbox_path.py)
MIN_QUEUE_PACKETS = 100
TRIM_ECHOES = 20  # ICMP echoes that measure the line's own round-trip overhead when a path is built
QUEUE_SLACK_S = 0.002  # seconds of the rate the default queue holds beyond one BDP (see above)
MTU = 1500
OFFLOAD_ENV = "TUNER_TUN_OFFLOAD"  # "0": one packet per read (no super-packets); "1": always super-packets
# Below this cap the line reads one packet at a time (unset OFFLOAD_ENV): it has the CPU for it and keeps
# finer time — at 100 Mbit/s with cubic filling the queue, p99 lateness was 0.23 ms per packet against
# 0.8 ms with super-packets (next to the 1 ms validity gate). Above it, only super-packets keep up.
OFFLOAD_MIN_RATE_BPS = 150e6
TUN_TXQLEN = 5000  # packets the TUN ring holds while the delay line is descheduled
_NETEM_MAX_LIMIT = 1_000_000
_NETEM_UNCAPPED_BPS = 10e9  # what "uncapped" means when sizing netem's packet limit

Runner = Callable[..., Any]  # run(side, fn, *args) -> fn's result, in a child inside that side's namespace


@dataclass(frozen=True)
class LinkPlan:
    """What the link will actually do: the backend and its effective settings."""

    backend: str
    one_way_delay: float = 0.0  # seconds, each direction
    rate_bps: float | None = None  # each direction; None = uncapped
    loss: float = 0.0  # each direction
    jitter: float = 0.0
    queue_packets: int = 0

    def describe(self) -> str:
        if self.backend == "none":
            return "none (plain veth)"
        rate = f"{self.rate_bps / 1e6:g} Mbit/s" if self.rate_bps else "uncapped"
        text = (
            f"{self.backend}: rtt {2 * self.one_way_delay * 1e3:g} ms, rate {rate}, "
            f"loss {self.loss * 100:g}%, queue {self.queue_packets} packets"
        )
        return text + (f", jitter {self.jitter * 1e3:g} ms" if self.jitter else "")


def default_queue(rate_bps: float, rtt: float) -> int:
    """One bandwidth-delay product plus :data:`QUEUE_SLACK_S` of the rate in MTU-sized packets, at least
    :data:`MIN_QUEUE_PACKETS`."""
    return max(MIN_QUEUE_PACKETS, math.ceil(rate_bps * (rtt + QUEUE_SLACK_S) / 8 / MTU))


def plan_link(path: NetworkPath | None, *, netem: bool, backend: str | None = None) -> LinkPlan:
    """The backend and settings for ``path``. ``netem``: whether the kernel has sch_netem;
    ``backend`` forces one (an explicit choice the kernel cannot honour is an error)."""
    if backend is not None and backend not in BACKENDS:
        raise SandboxError(f"unknown sandbox backend {backend!r}", hint=f"one of {', '.join(BACKENDS)}")
    plain = path is None or path.is_plain
    if backend == "none" or (backend is None and plain):
        if not plain:
            raise SandboxError(
                f"the plain veth backend cannot emulate {path.describe() if path else 'this path'}",
                hint="leave the backend to tuner, or ask for netem or tun",
            )
        return LinkPlan("none")
    chosen = backend or ("netem" if netem else "tun")
    if chosen == "netem" and not netem:
        raise SandboxError(
            "this kernel has no netem qdisc (sch_netem)",
            hint="use the userspace delay line (backend tun), or load sch_netem "
            "(modprobe sch_netem; on Debian it ships with the kernel image)",
        )
    path = path or NetworkPath()
    rate = path.rate_bps
    if chosen == "tun" and rate is None:
        rate = DEFAULT_RATE_BPS
    queue = path.queue_packets or default_queue(rate or DEFAULT_RATE_BPS, path.rtt)
    jitter = path.jitter if chosen == "netem" else 0.0
    return LinkPlan(chosen, path.rtt / 2, rate, path.loss, jitter, queue)


def netem_settings(plan: LinkPlan) -> nl.NetemSettings:
    """One direction's netem qdisc. netem's ``limit`` counts every packet it holds (queued for the
    rate *and* in flight for the delay), so it is the queue plus the packets one delay holds."""
    in_flight = math.ceil((plan.rate_bps or _NETEM_UNCAPPED_BPS) * plan.one_way_delay / 8 / MTU)
    return nl.NetemSettings(
        delay_us=round(plan.one_way_delay * 1e6),
        loss_percent=plan.loss * 100,
        rate_bps=int(plan.rate_bps) if plan.rate_bps else None,
        limit=min(_NETEM_MAX_LIMIT, plan.queue_packets + in_flight),
        jitter_us=round(plan.jitter * 1e6),
    )


def netem_probe() -> bool:
    """Inside a namespace (a child's): whether the kernel accepts a netem qdisc (tried on a scratch
    veth pair that is deleted again)."""
    nl.add_veth_pair("tnrprobe0", "tnrprobe1")
    try:
        return nl.netem_supported("tnrprobe0")
    finally:
        nl.delete_link("tnrprobe0")


class PathLink(Protocol):
    backend: str
    plan: LinkPlan

    def prepare(self, side: Side) -> None:
        """Build this side's half; runs in a child inside ``side``'s namespace."""

    def collect(self, side: Side) -> None:
        """In the parent, right after :meth:`prepare` for ``side`` returned."""

    def start(self) -> None:
        """In the parent, once both sides are prepared."""

    def helper_pids(self) -> list[int]: ...

    def health(self) -> PathHealth: ...

    def reset_health(self) -> None: ...

    def set_partitioned(self, on: bool) -> None: ...

    def set_lossless(self, on: bool) -> None: ...

    def stop(self) -> None: ...


# --- veth: the plain link, and netem on top of it ---------------------------------------------


def _since(now: Mapping[Side, Any], base: Mapping[Side, Any]) -> dict[Side, Any]:
    """Per side, counters ``now`` minus ``base`` (both the same dataclass of integers)."""
    return {
        side: type(now[side])(*(a - b for a, b in zip(astuple(now[side]), astuple(base[side]))))
        for side in now
    }


@dataclass(frozen=True)
class _VethCounters:
    tx_packets: int
    tx_ip_bytes: int
    dropped: int


def _veth_counters() -> _VethCounters:
    c = nl.link_counters(IFNAME)
    return _VethCounters(c.tx_packets, c.tx_bytes - 14 * c.tx_packets, c.tx_dropped + c.rx_dropped)


class VethLink:
    """A veth pair with static neighbour entries (no ARP); a partition points them at a dead MAC."""

    backend = "none"

    def __init__(self, plan: LinkPlan, netns: Mapping[Side, str], run: Runner) -> None:
        self.plan = plan
        self._netns = dict(netns)
        self._run = run
        self._base: dict[Side, Any] = {}
        self._t0 = time.monotonic()

    def prepare(self, side: Side) -> None:
        peer = peer_of(side)
        if side is Side.CLIENT:
            nl.add_veth_pair(
                IFNAME,
                IFNAME,
                self._netns[Side.SERVER],
                local_mac=MACS[Side.CLIENT],
                peer_mac=MACS[Side.SERVER],
            )
        nl.add_ipv4(IFNAME, ADDRESSES[side], PREFIXLEN)
        nl.set_link(IFNAME)
        nl.set_neighbour(IFNAME, ADDRESSES[peer], MACS[peer])
        self._prepare_qdisc(side)

    def _prepare_qdisc(self, side: Side) -> None:
        pass

    def collect(self, side: Side) -> None:
        pass

    def start(self) -> None:
        self.reset_health()

    def helper_pids(self) -> list[int]:
        return []

    def _counters(self) -> dict[Side, Any]:
        return {side: self._run(side, _veth_counters) for side in Side}

    def reset_health(self) -> None:
        self._base = self._counters()
        self._t0 = time.monotonic()

    def health(self) -> PathHealth:
        d = _since(self._counters(), self._base)
        return self._kernel_health(
            packets=sum(x.tx_packets for x in d.values()),
            dropped_loss=0,
            drops=sum(x.dropped for x in d.values()),
            to_server=d[Side.CLIENT].tx_ip_bytes,
            to_client=d[Side.SERVER].tx_ip_bytes,
        )

    def _kernel_health(
        self, *, packets: int, dropped_loss: int, drops: int, to_server: int, to_client: int
    ) -> PathHealth:
        """The health of a path the kernel carries (no delay line: no late packets, no helper CPU);
        ``drops`` (the veth's own) are what can spoil it."""
        valid, reason = judge(drops, 0.0)
        return PathHealth(
            backend=self.backend,
            packets=packets,
            dropped_loss=dropped_loss,
            dropped_queue=0,
            tun_drops=drops,
            late_packets=0,
            late_p99_ms=0.0,
            late_max_ms=0.0,
            cpu_seconds=0.0,
            valid=valid,
            reason=reason,
            bytes_to_server=to_server,
            bytes_to_client=to_client,
            elapsed=time.monotonic() - self._t0,
            rate_bps=self.plan.rate_bps,
        )

    def set_partitioned(self, on: bool) -> None:
        for side in Side:
            peer = peer_of(side)
            self._run(side, nl.set_neighbour, IFNAME, ADDRESSES[peer], DEAD_MAC if on else MACS[peer])

    def set_lossless(self, on: bool) -> None:
        pass  # a plain veth pair loses nothing

    def stop(self) -> None:
        pass  # the veth pair goes with the namespaces


@dataclass(frozen=True)
class _NetemCounters:
    packets: int
    sent: int
    sent_bytes: int
    drops: int


def _netem_counters() -> _NetemCounters:
    q = nl.netem_counters(IFNAME)
    # netem counts bytes at the qdisc (Ethernet frames on veth): report IP bytes like the delay line
    return _NetemCounters(q.packets + q.drops + q.backlog, q.packets, q.bytes - 14 * q.packets, q.drops)


class NetemLink(VethLink):
    """The veth pair with a netem qdisc on each end's egress: the kernel does delay, loss and rate."""

    backend = "netem"

    def _prepare_qdisc(self, side: Side) -> None:
        nl.add_netem(IFNAME, netem_settings(self.plan))

    def set_lossless(self, on: bool) -> None:
        settings = netem_settings(self.plan)
        for side in Side:
            self._run(side, nl.change_netem, IFNAME, replace(settings, loss_percent=0.0) if on else settings)

    def _counters(self) -> dict[Side, Any]:
        return {side: self._run(side, _netem_counters) for side in Side}

    def health(self) -> PathHealth:
        d = _since(self._counters(), self._base)
        return self._kernel_health(
            packets=sum(x.packets for x in d.values()),
            # netem counts its random loss and its limit overflows together
            dropped_loss=sum(x.drops for x in d.values()),
            drops=0,
            to_server=d[Side.CLIENT].sent_bytes,
            to_client=d[Side.SERVER].sent_bytes,
        )


# --- tun: the userspace delay line --------------------------------------------------------------


def _schedstat_seconds(pid: int) -> float:
    """CPU time of ``pid`` in seconds from /proc/PID/schedstat (exact, not tick-sampled)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class TunLink:
    """A TUN device per namespace, one forwarder process per direction.

    The forwarder of direction client->server lives in the client namespace and reads the client's
    TUN device (and vice versa), so /proc/PID/net/dev of each forwarder shows the device it drains.
    The TUN devices exist exactly as long as the forwarders hold their file descriptors.
    """

    backend = "tun"

    def __init__(self, plan: LinkPlan, netns: Mapping[Side, str], run: Runner) -> None:
        self.plan = plan
        self._netns = dict(netns)
        self._parent_sock, self._child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._fds: dict[Side, int] = {}
        forced = os.environ.get(OFFLOAD_ENV)
        rate = plan.rate_bps or DEFAULT_RATE_BPS
        self._offload = forced == "1" if forced in ("0", "1") else rate > OFFLOAD_MIN_RATE_BPS
        self._vnet: dict[Side, bool] = {}
        self.offload = False  # whether the line moves super-packets (known after start)
        self.overhead = 0.0  # seconds the line adds to a round trip beyond its delay (measured at start)
        self._stats: dict[Side, LineStats] = {}
        self._forwarders: dict[Side, NetnsChild] = {}
        self._dead_reason: str | None = None
        self._base_dev = 0
        self._base_cpu = 0.0
        self._base_cpu_each: dict[Side, float] = {}
        self._base_steal = 0.0
        self._t0 = time.monotonic()

    def prepare(self, side: Side) -> None:
        vnet = self._offload
        try:
            fd = open_tun(IFNAME, vnet=vnet)
        except OSError:
            if not vnet:
                raise
            vnet = False  # a kernel without TUN offloads: one packet per read
            fd = open_tun(IFNAME)
        nl.add_ipv4(IFNAME, ADDRESSES[side], PREFIXLEN)
        nl.set_link(IFNAME, txqlen=TUN_TXQLEN, mtu=MTU)
        socket.send_fds(self._child_sock, [f"{side.value}:{int(vnet)}".encode()], [fd])

    def collect(self, side: Side) -> None:
        msg, fds, _, _ = socket.recv_fds(self._parent_sock, 64, 1)
        name, _, vnet = msg.decode().partition(":")
        if name != side.value or len(fds) != 1:
            for fd in fds:
                _close(fd)
            raise SandboxError(f"the {side.value} TUN device was not handed over")
        self._fds[side] = fds[0]
        self._vnet[side] = vnet == "1"

    def start(self) -> None:
        self._parent_sock.close()
        self._child_sock.close()
        if len(set(self._vnet.values())) != 1:
            for fd in self._fds.values():
                _close(fd)
            self._fds.clear()
            raise SandboxError(
                "one TUN device took offloads and the other did not",
                hint="run `tuner doctor`; TUNER_TUN_OFFLOAD=0 turns offloads off",
            )
        self.offload = self._vnet[Side.CLIENT]
        params = LineParams(
            self.plan.one_way_delay,
            float(self.plan.rate_bps or DEFAULT_RATE_BPS),
            self.plan.loss,
            self.plan.queue_packets,
            vnet=self.offload,
        )
        try:
            for side in Side:
                self._stats[side] = LineStats()
                rfd, wfd = self._fds[side], self._fds[peer_of(side)]
                self._forwarders[side] = NetnsChild(
                    self._netns[side], run_line, (rfd, wfd, params, self._stats[side]), die_with_parent=True
                )
        finally:
            for fd in self._fds.values():  # the forwarders hold them now: the devices live as long
                _close(fd)
            self._fds.clear()
        self._trim_overhead()
        self.reset_health()

    def _trim_overhead(self) -> None:
        """Measure what the line adds to a round trip beyond its delay (two TUN crossings per direction
        and its wake-ups: ~0.1 ms here, 12% of a 1 ms RTT) with kernel-answered, kernel-timestamped ICMP
        echoes across the fresh path, and take half of it off each direction's delay, so that the RTT
        TCP measures is the one asked for. The smallest overhead seen is taken off (a floor, like a
        path's propagation delay), so the fastest round trips come back at about the RTT asked for and
        the line's wake-up jitter stays on top of it, as its lateness (PathHealth) reports. On a busy
        machine the echoes may all have been slow and the floor a few tens of microseconds short (at
        1 ms RTT the kernel's min_rtt stayed within 5% in 11 of 12 runs: bench/results/sandbox_path_*.md);
        never by more than the overhead measured. Without a delay there is nothing to take it from; when
        the echoes do not come back (a lossy path may lose a few), the delay stays as it is."""
        rtt = 2 * self.plan.one_way_delay
        if rtt <= 0:
            return
        try:
            rtts = run_in_netns(
                self._netns[Side.CLIENT],
                echo_rtts,
                ADDRESSES[Side.SERVER],
                TRIM_ECHOES,
                0.001,
                rtt + 0.5,
            )
        except (ChildFailed, OSError) as exc:
            log.warning("sandbox.trim_failed", error=str(exc))
            return
        if len(rtts) < TRIM_ECHOES // 2:
            log.info("sandbox.trim_skipped", echoes=len(rtts), sent=TRIM_ECHOES)
            return
        overhead = rtts[0] - rtt  # the smallest (echo_rtts sorts them)
        trim = min(max(0.0, overhead / 2), self.plan.one_way_delay)
        for st in self._stats.values():
            st.set_trim(trim)
        self.overhead = overhead
        log.info(
            "sandbox.line_trimmed",
            overhead_ms=round(overhead * 1e3, 3),
            median_overhead_ms=round((rtts[len(rtts) // 2] - rtt) * 1e3, 3),
            rtt_ms=round(rtt * 1e3, 3),
        )

    def helper_pids(self) -> list[int]:
        return [f.pid for f in self._forwarders.values()]

    def _dev_drops(self) -> int:
        total = 0
        for f in self._forwarders.values():
            c = read_dev_counters(f.pid, IFNAME)
            if c is not None:
                total += c.tx_dropped + c.rx_dropped
        return total

    def _cpu_each(self) -> dict[Side, float]:
        return {s: _schedstat_seconds(f.pid) for s, f in self._forwarders.items()}

    def _cpu(self) -> float:
        return sum(self._cpu_each().values())

    def reset_health(self) -> None:
        for st in self._stats.values():
            st.request_reset()
        self._base_dev = self._dev_drops()
        self._base_cpu_each = self._cpu_each()
        self._base_cpu = sum(self._base_cpu_each.values())
        self._base_steal, _ = steal_seconds()
        self._t0 = time.monotonic()

    def _alive(self) -> bool:
        for f in self._forwarders.values():
            if not f.alive():
                if self._dead_reason is None:
                    try:
                        f.result(timeout=0)
                        self._dead_reason = "exited"
                    except (ChildFailed, Exception) as exc:  # noqa: BLE001 - only its text is kept
                        self._dead_reason = f"{type(exc).__name__}: {exc}"
                return False
        return True

    def health(self) -> PathHealth:
        alive = self._alive()
        snaps: dict[Side, DirectionSnapshot] = {s: st.snapshot() for s, st in self._stats.items()}
        hist = [sum(s.late_hist[i] for s in snaps.values()) for i in range(LATE_BUCKETS)]
        p99 = late_percentile(hist, 0.99) * 1e3
        late_packets = sum(hist[int(LATE_MS * 100) :])  # fine buckets are 10 us wide
        tun_drops = self._dev_drops() - self._base_dev + sum(s.write_errors for s in snaps.values())
        elapsed = time.monotonic() - self._t0
        cpu_each = self._cpu_each()
        busiest = max((cpu_each[s] - self._base_cpu_each.get(s, 0.0) for s in cpu_each), default=0.0)
        share = busiest / elapsed if elapsed > 0 else 0.0
        steal, cpus = steal_seconds()
        steal_share = max(0.0, steal - self._base_steal) / (elapsed * cpus) if elapsed > 0 else 0.0
        valid, reason = judge(
            tun_drops, p99, alive, line_cpu_share=share, elapsed=elapsed, steal_share=steal_share
        )
        if not alive and self._dead_reason:
            reason = f"{reason} ({self._dead_reason})"
        return PathHealth(
            backend=self.backend,
            packets=sum(s.packets for s in snaps.values()),
            dropped_loss=sum(s.dropped_loss for s in snaps.values()),
            dropped_queue=sum(s.dropped_queue for s in snaps.values()),
            tun_drops=tun_drops,
            late_packets=late_packets,
            late_p99_ms=p99,
            late_max_ms=max(s.late_max for s in snaps.values()) * 1e3 if snaps else 0.0,
            cpu_seconds=self._cpu() - self._base_cpu,
            valid=valid,
            reason=reason,
            dropped_partition=sum(s.dropped_partition for s in snaps.values()),
            bytes_to_server=snaps[Side.CLIENT].sent_bytes if snaps else 0,
            bytes_to_client=snaps[Side.SERVER].sent_bytes if snaps else 0,
            elapsed=elapsed,
            rate_bps=self.plan.rate_bps,
            offload=self.offload,
            frames=sum(s.reads for s in snaps.values()),
            line_cpu_share=share,
            helpers_alive=alive,
            overhead_ms=self.overhead * 1e3,
            steal_share=steal_share,
        )

    def set_partitioned(self, on: bool) -> None:
        for st in self._stats.values():
            st.set_partitioned(on)

    def set_lossless(self, on: bool) -> None:
        for st in self._stats.values():
            st.set_lossless(on)

    def stop(self) -> None:
        profiling = bool(os.environ.get(PROFILE_ENV))
        for f in self._forwarders.values():
            if profiling:  # let the line write its profile
                f.kill(signal.SIGTERM, grace=3.0)
            else:
                f.kill()
        self._forwarders.clear()
        for fd in self._fds.values():
            _close(fd)
        self._fds.clear()
        for st in self._stats.values():
            st.close()
        self._stats.clear()
        for s in (self._parent_sock, self._child_sock):
            s.close()


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def make_link(plan: LinkPlan, netns: Mapping[Side, str], run: Runner) -> PathLink:
    classes: dict[str, type[VethLink] | type[TunLink]] = {
        "none": VethLink,
        "netem": NetemLink,
        "tun": TunLink,
    }
    return classes[plan.backend](plan, netns, run)
