"""One observation as the daemon uses it: services to track, signals for the guard, a summary for status.

The live source is tuner.observe's :class:`~tuner.observe.Observer`: each step reads the sockets and
counters once and compares them with the previous step, so an observation covers the whole interval
and never blocks the loop for long. For another namespace (``--netns``) the Observer runs in one
long-lived child inside it, so that only the (small) observation crosses the process boundary, not
every socket of every snapshot.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tuner.daemon.regression import NAMESPACE
from tuner.daemon.watch import Observed, Signature
from tuner.errors import TunerError
from tuner.logs import get_logger
from tuner.netns import ChildFailed, NetnsChild

__all__ = ["LiveSource", "NetnsSource", "Sample", "SampleSource", "to_sample"]

log = get_logger(__name__)
_STEP_TIMEOUT = 60.0  # seconds one observation may take in the namespace child


@dataclass(frozen=True)
class Sample:
    wall: float  # when the interval started (epoch seconds)
    duration: float  # seconds the interval lasted
    services: tuple[Observed, ...]
    counters: Mapping[str, int]  # counter deltas over the interval
    rtt: Mapping[str, float]  # service key -> rtt estimate, seconds
    symptoms: frozenset[tuple[str, str]]  # (service key, symptom name)
    summary: list[dict[str, Any]]  # for `tuner status`


class SampleSource(Protocol):
    def sample(self) -> Sample | None: ...
    def close(self) -> None: ...


def to_sample(obs: Any) -> Sample:
    """A :class:`Sample` from a tuner.observe ``Observation``."""
    services = []
    rtt: dict[str, float] = {}
    symptoms: set[tuple[str, str]] = set()
    summary = []
    for svc in obs.services:
        names = frozenset(s.name for s in svc.symptoms)
        path = svc.path
        sig = Signature(
            svc.key, svc.service_class.value, float(path.rtt), path.rate_bps, float(path.loss), names
        )
        process = svc.process.describe() if svc.process is not None else ""
        services.append(Observed(sig, process=process, workload=svc.workload.to_dict(), path=path.to_dict()))
        if path.rtt > 0:
            rtt[svc.key] = float(path.rtt)
        symptoms.update((svc.key, n) for n in names)
        summary.append(
            {
                "key": svc.key,
                "process": process,
                "class": svc.service_class.value,
                "path": path.describe(),
                "workload": svc.workload.kind.value,
                "symptoms": [s.to_dict() for s in svc.symptoms],
            }
        )
    for s in obs.symptoms:
        symptoms.add((NAMESPACE, s.name))
    if obs.symptoms:
        summary.append(
            {
                "key": NAMESPACE,
                "process": "",
                "class": "",
                "path": "",
                "workload": "",
                "symptoms": [s.to_dict() for s in obs.symptoms],
            }
        )
    return Sample(
        float(obs.wall_time),
        float(obs.duration),
        tuple(services),
        dict(obs.counters),
        rtt,
        frozenset(symptoms),
        summary,
    )


class LiveSource:
    """Observations of the namespace the daemon runs in, through tuner.observe, in this process."""

    def __init__(self) -> None:
        self._observer: Any = None

    def sample(self) -> Sample | None:
        if self._observer is None:
            from tuner.observe import Observer

            self._observer = Observer(None)
        obs = self._observer.step()
        return None if obs is None else to_sample(obs)

    def close(self) -> None:
        if self._observer is not None:
            self._observer.close()
            self._observer = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, n: int, timeout: float) -> bytes:
    chunks, got = [], 0
    while got < n:
        if not select.select([fd], [], [], timeout)[0]:
            raise ChildFailed(f"the observer child gave no answer within {timeout:g} s")
        chunk = os.read(fd, n - got)
        if not chunk:
            raise ChildFailed("the observer child exited")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _serve(requests: int, replies: int, parent_ends: tuple[int, ...]) -> None:
    """The observer child, inside the namespace: one observation per request byte, until EOF."""
    for fd in parent_ends:  # so that the parent closing its ends is seen as EOF here
        os.close(fd)
    signal.set_wakeup_fd(-1)  # the daemon's wake-up pipe and handlers are not this process's business
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    from tuner.observe import Observer

    observer = Observer(None)
    while os.read(requests, 1):
        try:
            payload: tuple = ("ok", observer.step())
        except TunerError as exc:
            payload = ("err", exc)
        data = pickle.dumps(payload)
        _write_all(replies, len(data).to_bytes(8, "big") + data)


class NetnsSource:
    """Observations of ``netns`` from a long-lived child inside it (it dies with the daemon)."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._child: NetnsChild | None = None
        self._req = self._resp = -1

    def _start(self) -> None:
        req_r, req_w = os.pipe2(os.O_CLOEXEC)
        resp_r, resp_w = os.pipe2(os.O_CLOEXEC)
        try:
            self._child = NetnsChild(
                self.netns, _serve, (req_r, resp_w, (req_w, resp_r)), die_with_parent=True
            )
        except BaseException:
            os.close(req_w)  # the namespace is gone, say: retried every interval, so nothing may leak
            os.close(resp_r)
            raise
        finally:
            os.close(req_r)
            os.close(resp_w)
        self._req, self._resp = req_w, resp_r
        log.info("observe.child_started", netns=self.netns, pid=self._child.pid)

    def sample(self) -> Sample | None:
        if self._child is None or not self._child.alive():
            self.close()
            self._start()
        try:
            _write_all(self._req, b"s")
            size = int.from_bytes(_read_exactly(self._resp, 8, _STEP_TIMEOUT), "big")
            payload = pickle.loads(_read_exactly(self._resp, size, _STEP_TIMEOUT))  # noqa: S301 (our own forked child)
        except (OSError, ChildFailed) as exc:
            self.close()  # started again at the next sample
            raise ChildFailed(f"observing namespace {self.netns} failed: {exc}") from None
        if payload[0] == "err":
            raise payload[1]
        obs = payload[1]
        return None if obs is None else to_sample(obs)

    def close(self) -> None:
        for fd in (self._req, self._resp):
            if fd >= 0:
                os.close(fd)
        self._req = self._resp = -1
        if self._child is not None:
            self._child.kill(signal.SIGTERM, grace=2.0)  # it leaves at EOF on its own; this reaps it
            self._child = None
