"""Sandbox: a client and a server network namespace joined by an emulated path; always destroyed.

    with Sandbox(NetworkPath(rtt=0.05, rate_bps=100e6), server_sysctls={"net.core.somaxconn": 4096}) as sb:
        job = sb.spawn(Side.SERVER, serve)
        sb.run(Side.CLIENT, load, sb.address(Side.SERVER))
        sb.health()

Each namespace gets: loopback up, IPv6 off, ``net.ipv4.tcp_no_metrics_save=1`` (no cached
ssthresh/RTT leaking between trials), then the caller's per-namespace sysctls, all written through
:class:`tuner.knobs.SysctlTree` by a child inside the namespace. The parent process never enters a
namespace: everything namespace-local runs in forked children (:class:`tuner.netns.NetnsChild`), and
those children die with their owner (PR_SET_PDEATHSIG). The kernel ties that to the *thread* that
forked them: open a sandbox (and spawn its jobs) in a thread that outlives it.

Backends (``sb.backend``, also in every :class:`PathHealth`): "none" for a plain path, "netem" where the
kernel has sch_netem, else "tun" (the userspace delay line, moving TCP super-packets where the kernel
offers TUN offloads; rate capped at 200 Mbit/s and a queue of one bandwidth-delay product unless the NetworkPath
says otherwise: see :mod:`tuner.sandbox.links`; what the line can carry on this machine is measured by
:mod:`tuner.sandbox.ceiling`).
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path as FsPath
from typing import Any, TypeVar

from tuner.adapters import rtnl as nl
from tuner.errors import KnobError, NotRootError, SandboxError, TunerError
from tuner.knobs import Assignment, Knob, SysctlTree, Value, get_knob
from tuner.logs import get_logger
from tuner.netns import NETNS_DIR, NetnsChild
from tuner.sandbox import guard
from tuner.sandbox.health import PathHealth
from tuner.sandbox.job import Job
from tuner.sandbox.layout import ADDRESSES, Side
from tuner.sandbox.links import LinkPlan, PathLink, make_link, netem_probe, plan_link
from tuner.sandbox.registry import ProcessId, Registry, SandboxRecord, processes_in_netns, reap_stale
from tuner.workload import NetworkPath

__all__ = ["SETUP_SYSCTLS", "Sandbox", "netem_available"]

log = get_logger(__name__)
T = TypeVar("T")

# written in every sandbox namespace before the caller's own sysctls (which may override them)
SETUP_SYSCTLS: Mapping[str, Value] = {"net.ipv4.tcp_no_metrics_save": True}
_IPV6_OFF = ("net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6")

_counter = itertools.count()
_reaped_in: int | None = None  # pid of the process that already reaped stale sandboxes
_netem: bool | None = None  # cached: does this kernel have sch_netem?


def _netns_items(assignment: Mapping[str, Value]) -> list[tuple[Knob, Value]]:
    """What a sandbox namespace can set (see :meth:`Assignment.require_netns`) as (knob, value) pairs."""
    return list(Assignment(assignment).require_netns().knobs())


def _write_sysctls(items: list[tuple[Knob, Value]], where: str) -> None:
    """In a child inside the namespace: write each value through the one sysctl writer."""
    tree = SysctlTree()
    for knob, value in items:
        try:
            tree.write(knob, value)
        except OSError as exc:
            if exc.errno == errno.EPERM and knob.name == "net.ipv4.tcp_congestion_control":
                hint = (
                    "a namespace may only select algorithms in net.ipv4.tcp_allowed_congestion_control "
                    "(host-wide); try it per socket with TCP_CONGESTION instead"
                )
            elif exc.errno == errno.EPERM:
                hint = "the kernel does not let a network namespace set this value"
            else:
                hint = "check the value against `tuner knobs` and `tuner doctor`"
            raise KnobError(
                knob.name,
                f"the kernel refused {knob.domain.to_kernel(value)!r} in the {where} "
                f"namespace: {exc.strerror or exc}",
                value=value,
                hint=hint,
            ) from None


def _prepare_side(side: Side, items: list[tuple[Knob, Value]], prepare: Callable[[Side], None]) -> None:
    """In a child inside ``side``'s fresh namespace: basics, sysctls, then the link's half."""
    for rel in _IPV6_OFF:  # namespace setup, not a tuning knob: IPv6 would only add noise (RS/DAD)
        f = FsPath("/proc/sys") / rel
        if f.exists():
            f.write_text("1\n")
    nl.set_link("lo")
    _write_sysctls(items, side.value)
    prepare(side)


def _next_name() -> str:
    pid = os.getpid()
    while True:
        name = f"tuner-{pid}-{next(_counter)}"
        if not any((NETNS_DIR / f"{name}-{s}").exists() for s in ("c", "s")):
            return name


def _reap_once() -> None:
    global _reaped_in  # noqa: PLW0603 (once per process)
    if _reaped_in == os.getpid():
        return
    _reaped_in = os.getpid()
    try:
        reap_stale()
    except (OSError, TunerError) as exc:
        log.warning("sandbox.reap_failed", error=str(exc))


def netem_available(sandbox: Sandbox | None = None) -> bool:
    """Whether this kernel has the netem qdisc; tried once per process inside a sandbox namespace."""
    global _netem  # noqa: PLW0603 (probed once per process)
    if _netem is None:
        if sandbox is not None:
            _netem = bool(sandbox.run(Side.CLIENT, netem_probe))
        else:
            with Sandbox() as sb:
                _netem = bool(sb.run(Side.CLIENT, netem_probe))
    return _netem


class Sandbox:
    """Two network namespaces (client, server) joined by a link that emulates ``path``.

    ``backend`` forces "none", "netem" or "tun"; by default: "none" for a plain path, netem where the
    kernel has it, the userspace delay line ("tun") otherwise.
    """

    def __init__(
        self,
        path: NetworkPath | None = None,
        *,
        client_sysctls: Mapping[str, Value] = {},
        server_sysctls: Mapping[str, Value] = {},
        backend: str | None = None,
    ) -> None:
        self.path = path
        self._sysctls = {
            Side.CLIENT: _netns_items(client_sysctls),
            Side.SERVER: _netns_items(server_sysctls),
        }
        self._backend_request = backend
        self.name = ""
        self._netns: dict[Side, str] = {}
        self._created: list[str] = []
        self._link: PathLink | None = None
        self._jobs: list[Job] = []
        self._owner: ProcessId | None = None
        self._registry = Registry()
        self._state = "new"
        self._opened_at = 0.0

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> Sandbox:
        if self._state != "new":
            raise SandboxError(
                f"sandbox {self.name or '(unnamed)'} was already opened",
                hint="create a new Sandbox for each use",
            )
        if os.geteuid() != 0:
            raise NotRootError("creating a sandbox (network namespaces)")
        t0 = time.monotonic()
        _reap_once()
        self.name = _next_name()
        self._netns = {Side.CLIENT: f"{self.name}-c", Side.SERVER: f"{self.name}-s"}
        self._owner = ProcessId.of(os.getpid())
        self._state = "opening"
        guard.track(self)
        try:
            self._write_record()  # before anything exists: a crash from here on is reapable
            for ns in self._netns.values():
                nl.create_netns(ns)
                self._created.append(ns)
            plan = self._plan()
            self._link = make_link(plan, self._netns, self.run)
            for side in (Side.CLIENT, Side.SERVER):
                self.run(
                    side,
                    _prepare_side,
                    side,
                    [(get_knob(k), v) for k, v in SETUP_SYSCTLS.items()] + self._sysctls[side],
                    self._link.prepare,
                )
                self._link.collect(side)
            self._link.start()
            self._write_record()
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise SandboxError(
                    f"could not create sandbox {self.name}: {exc}",
                    hint="run `tuner doctor` to see what this machine supports",
                ) from exc
            raise
        self._state = "open"
        self._opened_at = time.monotonic()
        log.info(
            "sandbox.created",
            sandbox=self.name,
            backend=plan.backend,
            link=plan.describe(),
            seconds=round(self._opened_at - t0, 4),
        )
        if self.path is not None and self.path.jitter and not plan.jitter:
            log.warning(
                "sandbox.jitter_ignored",
                sandbox=self.name,
                backend=plan.backend,
                jitter=self.path.jitter,
                reason="the delay line keeps packets in order",
            )
        return self

    def _plan(self) -> LinkPlan:
        needs_netem_answer = not (self.path is None or self.path.is_plain) and self._backend_request in (
            None,
            "netem",
        )
        netem = netem_available(self) if needs_netem_answer else bool(_netem)
        return plan_link(self.path, netem=netem, backend=self._backend_request)

    def close(self) -> None:
        """Kill every job, stop the link, remove the namespaces and the record. Idempotent."""
        if self._state in ("new", "closed"):
            return
        if self._owner is not None and self._owner.pid != os.getpid():
            return  # a forked child holding a copy: only the owner tears down
        t0 = time.monotonic()
        with guard.signals_deferred():
            self._state = "closed"
            for job in self._jobs:
                job.kill()
            self._jobs.clear()
            if self._link is not None:
                self._link.stop()
            self._kill_leftovers()
            for ns in self._created:
                try:
                    nl.remove_netns(ns)
                except OSError as exc:
                    if exc.errno != errno.ENOENT and (NETNS_DIR / ns).exists():
                        log.warning("sandbox.remove_failed", netns=ns, error=str(exc))
            self._created.clear()
            self._registry.remove(self.name)
            guard.untrack(self)
        log.info("sandbox.destroyed", sandbox=self.name, seconds=round(time.monotonic() - t0, 4))

    def _kill_leftovers(self) -> None:
        """Whatever still lives in our namespaces (a job's own children, say) goes with them."""
        for ns in self._created:
            for pid in processes_in_netns(NETNS_DIR / ns):
                if pid == os.getpid():
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                log.info("sandbox.killed_leftover", sandbox=self.name, netns=ns, pid=pid)

    def _write_record(self) -> None:
        assert self._owner is not None
        helpers = []
        for pid in (self._link.helper_pids() if self._link else []) + [
            j.pid for j in self._jobs if j.alive()
        ]:
            try:
                helpers.append(ProcessId.of(pid))
            except ProcessLookupError:
                continue
        self._registry.write(
            SandboxRecord(self.name, self._owner, tuple(self._netns.values()), tuple(helpers))
        )

    def _require_open(self) -> None:
        if self._state not in ("open", "opening"):
            raise SandboxError(
                f"sandbox {self.name or '(unnamed)'} is not open",
                hint="use it inside `with Sandbox(...) as sb:`",
            )

    # --- what the sandbox is ------------------------------------------------------------------

    def netns(self, side: Side) -> str:
        self._require_open()
        return self._netns[side]

    def address(self, side: Side) -> str:
        return ADDRESSES[side]

    @property
    def backend(self) -> str:
        return self.plan.backend

    @property
    def plan(self) -> LinkPlan:
        """The effective emulation (backend, one-way delay, rate, loss, queue)."""
        self._require_open()
        assert self._link is not None
        return self._link.plan

    def helper_pids(self) -> list[int]:
        """Processes this sandbox runs: the link's helpers and the jobs still alive."""
        self._require_open()
        assert self._link is not None
        return self._link.helper_pids() + [j.pid for j in self._jobs if j.alive()]

    # --- using it -------------------------------------------------------------------------------

    def apply_sysctls(self, side: Side, assignment: Mapping[str, Value]) -> None:
        """Write per-namespace sysctls in ``side``'s namespace (validated first; host knobs refused)."""
        items = _netns_items(assignment)
        self.run(side, _write_sysctls, items, side.value)
        log.info("sandbox.sysctls", sandbox=self.name, side=side.value, values={k.name: v for k, v in items})

    def run(self, side: Side, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a child inside ``side``'s namespace; its exception is re-raised here."""
        self._require_open()
        child = NetnsChild(self._netns[side], fn, args, kwargs, die_with_parent=True)
        try:
            return child.result()
        finally:
            child.kill()  # a no-op once it reported; an interrupted wait must not leave it running

    def spawn(self, side: Side, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """``fn`` in a background child inside ``side``'s namespace; killed when the sandbox closes."""
        self._require_open()
        job = Job(NetnsChild(self._netns[side], fn, args, kwargs, die_with_parent=True), side)
        self._jobs = [j for j in self._jobs if j.alive()] + [job]
        self._write_record()
        return job

    # --- the path ---------------------------------------------------------------------------

    def health(self) -> PathHealth:
        self._require_open()
        assert self._link is not None
        return self._link.health()

    def reset_health(self) -> None:
        self._require_open()
        assert self._link is not None
        self._link.reset_health()

    def set_partitioned(self, on: bool) -> None:
        """Drop every packet both ways (a silently dead peer) while ``on``; False heals the path."""
        self._require_open()
        assert self._link is not None
        self._link.set_partitioned(on)
        log.info("sandbox.partitioned" if on else "sandbox.healed", sandbox=self.name)

    def set_lossless(self, on: bool) -> None:
        """Pause the path's random loss while ``on``, from the delay line's next wake-up (a probe's setup,
        which is not what it measures, e.g. opening hundreds of connections, where each lost SYN costs a
        1 s retransmission); False resumes it. The delay, the rate and the queue stay as they are."""
        self._require_open()
        assert self._link is not None
        self._link.set_lossless(on)
        log.debug("sandbox.loss_paused" if on else "sandbox.loss_resumed", sandbox=self.name)

    def __repr__(self) -> str:
        return f"Sandbox({self.name or '(unnamed)'}, {self._state})"
