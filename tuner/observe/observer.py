"""Watching a namespace over an interval: ``observe()`` for one answer, ``Observer`` for the daemon loop."""

from __future__ import annotations

import time
from typing import Any

from tuner.adapters.procs import SocketOwners
from tuner.adapters.sockdiag import SockDiag
from tuner.errors import InputError
from tuner.logs import get_logger
from tuner.netns import run_in_netns
from tuner.observe.classify import Observation, Thresholds, signature
from tuner.observe.snapshot import Snapshot, attribute, collect, read_host_sysctls, sample_listeners

__all__ = ["Observer", "collect_interval", "observe"]

log = get_logger(__name__)


def collect_interval(
    duration: float, sample_interval: float = 0.25, *, netns_name: str | None = None
) -> tuple[Snapshot, Snapshot, dict[int, int]]:
    """Two snapshots ``duration`` apart in the calling process's namespace, and the largest accept
    queue of each listener (by cookie) sampled in between (a full queue rarely shows in a snapshot)."""
    with SockDiag() as diag:
        before = collect(diag, netns_name=netns_name)
        peaks: dict[int, int] = {s.cookie: s.rqueue for s in before.sockets if s.is_listener}
        deadline = before.taken_at + duration
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(sample_interval, left))
            for s in sample_listeners(diag):
                if s.rqueue > peaks.get(s.cookie, -1):
                    peaks[s.cookie] = s.rqueue
        after = collect(diag, netns_name=netns_name)
    return before, after, peaks


def _fillread_host_sysctls(*snapshots: Snapshot) -> None:
    host = read_host_sysctls()
    for snap in snapshots:
        for name, value in host.items():
            snap.sysctls.setdefault(name, value)


def observe(
    duration: float = 10.0,
    netns: str | None = None,
    *,
    sample_interval: float = 0.25,
    thresholds: Thresholds | None = None,
    owners: SocketOwners | None = None,
) -> Observation:
    """Watch ``netns`` (None: the caller's namespace) for ``duration`` seconds and return its services."""
    if not duration > 0:
        raise InputError(
            f"observation duration must be positive, got {duration!r}", hint="e.g. --duration 10s"
        )
    log.info("observe.started", netns=netns, duration=duration)
    if netns is None:
        before, after, peaks = collect_interval(duration, sample_interval)
    else:
        before, after, peaks = run_in_netns(
            netns, collect_interval, duration, sample_interval, netns_name=netns
        )
        _fillread_host_sysctls(before, after)
    owners = owners or SocketOwners()
    attribute(before, owners)
    attribute(after, owners)
    obs = signature(before, after, listener_peaks=peaks, thresholds=thresholds)
    log.info(
        "observe.done",
        netns=netns,
        services=len(obs.services),
        with_symptoms=len(obs.needs_tuning),
        sockets=sum(obs.sockets.values()),
    )
    return obs


class Observer:
    """The daemon's loop body: each :meth:`step` takes one snapshot and compares it with the last one.

    The netlink socket and the process attribution cache are kept between steps, so a step costs one
    socket dump, two small /proc reads and the (pure) signature."""

    def __init__(self, netns: str | None = None, *, thresholds: Thresholds | None = None) -> None:
        self.netns = netns
        self.thresholds = thresholds
        self.owners = SocketOwners()
        self._diag = SockDiag(incremental=True) if netns is None else None
        self._last: Snapshot | None = None

    def _snapshot(self) -> Snapshot:
        if self._diag is not None:
            return collect(self._diag)
        snap = run_in_netns(self.netns, collect, netns_name=self.netns)
        _fillread_host_sysctls(snap)
        return snap

    def step(self) -> Observation | None:
        """An observation of the interval since the previous step (None on the first step)."""
        snap = self._snapshot()
        attribute(snap, self.owners)
        self.owners.retain({s.inode for s in snap.sockets})
        last, self._last = self._last, snap
        if last is None:
            return None
        return signature(last, snap, thresholds=self.thresholds)

    def close(self) -> None:
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
