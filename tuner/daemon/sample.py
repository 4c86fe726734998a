"""One observation as the daemon uses it: services to track, signals for the guard, a summary for status.

The live source is tuner.observe's :class:`~tuner.observe.Observer`: each step reads the sockets and
counters once and compares them with the previous step, so an observation covers the whole interval
and never blocks the loop for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from tuner.daemon.guard import NAMESPACE
from tuner.daemon.watch import Observed, Signature

__all__ = ["Sample", "SampleSource", "LiveSource", "to_sample"]


@dataclass(frozen=True)
class Sample:
    wall: float                                   # when the interval started (epoch seconds)
    duration: float                               # seconds the interval lasted
    services: tuple[Observed, ...]
    counters: Mapping[str, int]                   # counter deltas over the interval
    rtt: Mapping[str, float]                      # service key -> rtt estimate, seconds
    symptoms: frozenset[tuple[str, str]]          # (service key, symptom name)
    summary: list[dict[str, Any]]                 # for `tuner status`


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
        sig = Signature(svc.key, svc.service_class.value, float(path.rtt), path.rate_bps, float(path.loss), names)
        process = svc.process.describe() if svc.process is not None else ""
        services.append(Observed(sig, process=process, workload=svc.workload.to_dict(), path=path.to_dict()))
        if path.rtt > 0:
            rtt[svc.key] = float(path.rtt)
        symptoms.update((svc.key, n) for n in names)
        summary.append({"key": svc.key, "process": process, "class": svc.service_class.value,
                        "path": path.describe(), "workload": svc.workload.kind.value,
                        "symptoms": [s.to_dict() for s in svc.symptoms]})
    for s in obs.symptoms:
        symptoms.add((NAMESPACE, s.name))
    if obs.symptoms:
        summary.append({"key": NAMESPACE, "process": "", "class": "", "path": "",
                        "workload": "", "symptoms": [s.to_dict() for s in obs.symptoms]})
    return Sample(float(obs.wall_time), float(obs.duration), tuple(services), dict(obs.counters), rtt,
                  frozenset(symptoms), summary)


class LiveSource:
    """Observations of the host (or of ``netns``) through tuner.observe."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._observer: Any = None

    def sample(self) -> Sample | None:
        if self._observer is None:
            from tuner.observe import Observer
            self._observer = Observer(self.netns)
        obs = self._observer.step()
        return None if obs is None else to_sample(obs)

    def close(self) -> None:
        if self._observer is not None:
            self._observer.close()
            self._observer = None
