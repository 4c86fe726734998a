"""`recommend --auto`: observe the host, then search and write a profile for each service with symptoms.

    obs = observe(10.0)
    for svc in services_to_tune(obs):
        rec = recommend_for_service(svc, SearchConfig(), progress)

Choosing what to search is pure; the observation and the searches are the caller's steps, so a
front end can show each one as it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from tuner.kinds import spec
from tuner.observe import Observation, ServiceSignature
from tuner.probe.target import TargetBaseline
from tuner.profiles import profile_name_for
from tuner.search.recommend import Recommendation, recommend
from tuner.search.space import searchable_knobs
from tuner.search.study import SearchConfig, TrialEvent

__all__ = ["AutoSpace", "auto_space", "observed_evidence", "recommend_for_service", "services_to_tune"]


@dataclass(frozen=True)
class AutoSpace:
    """The search a service's symptoms call for: the config with its knobs, and what was left out."""

    config: SearchConfig
    knobs: tuple[str, ...]  # the knobs its symptoms name that the search uses
    left_out: dict[str, str]  # knob -> why a symptom's knob is not searched


def auto_space(svc: ServiceSignature, config: SearchConfig) -> AutoSpace:
    """Map the service's symptoms to knobs and search their union (what the probe of its workload kind
    can exercise), not its class's default knobs: retransmissions on a request/response service get
    congestion control, a listen overflow gets the backlogs. The user's ``--knob``/``--no-knob`` still
    apply. Without a usable symptom knob, the kind's default space is searched."""
    kind = svc.workload.kind
    keep, left = searchable_knobs(kind, svc.knobs)
    keep = [k for k in keep if k not in config.no_knobs]
    if not keep:
        return AutoSpace(config, (), left)
    defaults = spec(kind).knobs
    add = tuple(dict.fromkeys([*config.knobs, *(k for k in keep if k not in defaults)]))
    remove = tuple(
        dict.fromkeys([*config.no_knobs, *(k for k in defaults if k not in keep and k not in add)])
    )
    return AutoSpace(replace(config, knobs=add, no_knobs=remove), tuple(keep), left)


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


def recommend_for_service(
    svc: ServiceSignature,
    obs: Observation,
    config: SearchConfig,
    progress: Callable[[TrialEvent], None] | None = None,
    target: TargetBaseline | None = None,
) -> Recommendation:
    """Search the workload and path observed for ``svc`` from ``target``'s baseline (the host or namespace
    observed; default: this host); the profile is named after the service and its evidence records the
    observation that triggered it."""
    auto = auto_space(svc, replace(config, name=config.name or profile_name_for(svc.key)))
    rec = recommend(svc.workload, svc.path, auto.config, progress, target=target)
    observed = {
        **observed_evidence(svc, obs),
        "searched_knobs": list(rec.space.knobs),
        "symptom_knobs_left_out": dict(auto.left_out),
    }
    evidence = {**rec.profile.evidence, "observed": observed}
    return replace(rec, profile=replace(rec.profile, evidence=evidence))
