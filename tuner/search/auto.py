"""`recommend --auto`: observe the host, then search and write a profile for each service with symptoms.

    obs = observe(10.0)
    for svc in services_to_tune(obs):
        rec = recommend_for_service(svc, SearchConfig(), progress)

Choosing what to search is pure; the observation and the searches are the caller's steps, so a
front end can show each one as it happens.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from tuner.observe import Observation, ServiceSignature
from tuner.profiles import profile_name_for
from tuner.search.recommend import Recommendation, recommend
from tuner.search.study import SearchConfig, TrialEvent

__all__ = ["services_to_tune", "recommend_for_service", "observed_evidence"]


def services_to_tune(obs: Observation) -> list[ServiceSignature]:
    """The services whose symptoms a search can address, most symptoms first (stable order otherwise)."""
    return sorted(obs.needs_tuning, key=lambda s: -len(s.symptoms))


def observed_evidence(svc: ServiceSignature, obs: Observation) -> dict:
    """What was seen on the host that led to this search: kept in the profile's [evidence]."""
    process = svc.process.to_dict() if svc.process else {}
    return {
        "service": svc.key,
        "class": svc.service_class.value,
        "observed_seconds": round(obs.duration, 3),
        "process": {k: v for k, v in process.items() if v is not None},
        "symptoms": [{"name": s.name, "evidence": s.evidence, "knobs": list(s.knobs)} for s in svc.symptoms],
        "path_estimate": svc.path.describe(),
    }


def recommend_for_service(svc: ServiceSignature, obs: Observation, config: SearchConfig,
                          progress: Callable[[TrialEvent], None] | None = None) -> Recommendation:
    """Search the workload and path observed for ``svc``; the profile is named after the service and
    its evidence records the observation that triggered it."""
    config = replace(config, name=config.name or profile_name_for(svc.key))
    rec = recommend(svc.workload, svc.path, config, progress)
    evidence = {**rec.profile.evidence, "observed": observed_evidence(svc, obs)}
    return replace(rec, profile=replace(rec.profile, evidence=evidence))
