"""`recommend`: search the knobs of a workload in a sandbox and write the result as a profile with evidence.

    rec = recommend(workload, path, SearchConfig(budget=10), progress=print)
    rec.profile            # tuner.profiles.Profile; [evidence] holds the proof
    rec.verdict.text       # "latency_p99_ms 180x better than the baseline (...)" or "keep the defaults"

One sandbox serves every trial of a search (the probe resets it between trials); it is removed when the
search ends, fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuner import __version__
from tuner.errors import TunerError
from tuner.kinds import spec
from tuner.knobs import KernelFacts, Scope, Value
from tuner.logs import get_logger
from tuner.probe import run_probe
from tuner.probe.measurement import METRICS, Better, Measurement
from tuner.probe.side_by_side import Request, SideBySide
from tuner.probe.target import NOT_COPIED, TargetBaseline, read_scope, read_target
from tuner.profiles import Profile, render_socket_snippets
from tuner.search.journal import SearchJournal
from tuner.search.objective import Goal, Objective, parse_objective
from tuner.search.samplers import make_sampler
from tuner.search.space import Space, build_space, space_knobs
from tuner.search.stats import MIN_REPEATS, gain_interval
from tuner.search.study import (
    Batch,
    Measure,
    SearchConfig,
    Study,
    StudyResult,
    Trial,
    TrialEvent,
    TrialState,
    Verdict,
    default_budget,
)
from tuner.workload import NetworkPath, Workload, WorkloadKind

__all__ = [
    "Recommendation",
    "baseline_evidence",
    "live_baseline",
    "live_sysctls",
    "machine_info",
    "metric_comparison",
    "probe_settings",
    "profile_name",
    "recommend",
    "worse_metrics",
]

log = get_logger(__name__)


def probe_settings(
    kind: WorkloadKind, config: SearchConfig, path: NetworkPath | None = None
) -> tuple[int, float]:
    """(repeats, seconds per repeat) of each measurement: the user's choice, else the kind's
    (:meth:`KindSpec.probe_settings`: sized from the path where the path sets the time a steady state
    needs, as for bulk and rr)."""
    repeats, duration = spec(kind).probe_settings(path)
    return (config.repeats or repeats, config.duration or duration)


@dataclass(frozen=True)
class Recommendation:
    workload: Workload
    path: NetworkPath
    baseline: Measurement  # pooled baseline measurements
    best: Measurement  # pooled measurements of the recommended setting (the baseline if none)
    assignment: Mapping[str, Value]  # the recommended changes; {} means "keep the defaults"
    trials: tuple[Trial, ...]
    verdict: Verdict
    profile: Profile
    snippets: str  # what the application owner must do for the socket settings
    space: Space
    objective: str
    result: StudyResult

    @property
    def changed(self) -> dict[str, tuple[Value | None, Value]]:
        """knob -> (baseline value or None when unset, recommended value)."""
        return {k: (self.space.baseline.get(k), v) for k, v in self.assignment.items()}


def machine_info() -> dict[str, Any]:
    """The machine a measurement was taken on: kernel, CPU model, cores."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "cpu_model": model,
        "cores": os.cpu_count() or 0,
        "machine": platform.machine(),
    }


def profile_name(workload: Workload, path: NetworkPath) -> str:
    parts = [workload.kind.value]
    if path.rtt:
        parts.append(f"rtt{path.rtt * 1e3:g}ms")
    if path.rate_bps:
        parts.append(f"{path.rate_bps / 1e6:g}mbit")
    if path.loss:
        parts.append(f"loss{path.loss * 100:g}pct")
    return "-".join(parts).replace(".", "_")


live_sysctls = read_scope  # the catalogue's live sysctls of one scope, in the calling process's namespace


def live_baseline(sandbox: Any | None = None) -> dict[str, Value]:
    """What runs when nothing is set: the host's host-wide sysctls and the per-namespace sysctls of the
    sandbox's namespace (of this process's namespace without a sandbox)."""
    if sandbox is None:
        netns = live_sysctls(Scope.NETNS)
    else:
        from tuner.sandbox import Side  # only with a sandbox

        netns = sandbox.run(Side.CLIENT, live_sysctls, Scope.NETNS)
    return {**live_sysctls(Scope.HOST), **netns}


def _toml(value: Any) -> Any:
    """TOML has no null and no tuples: make evidence values TOML-able."""
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return [_toml(v) for v in value]
    if isinstance(value, list):
        return [_toml(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _toml(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def metric_comparison(
    baseline: Measurement, best: Measurement, *, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per metric present in both: medians, the ratio recommended/baseline, the gain (times better)
    with its bootstrap interval, and whether the change is beyond noise."""
    out: dict[str, dict[str, Any]] = {}
    for name in baseline.metrics:
        if name not in best.metrics:
            continue
        b, r = baseline.metrics[name], best.metrics[name]
        info = METRICS.get(name)
        direction = Goal.MIN if info is None or info.better is Better.LOWER else Goal.MAX
        ratio = (r.median / b.median) if b.median else (1.0 if r.median == b.median else math.inf)
        iv = gain_interval(b.samples or (b.median,), r.samples or (r.median,), direction, seed=seed)
        out[name] = {
            "baseline": b.median,
            "recommended": r.median,
            "ratio": ratio,
            "gain": iv.gain,
            "gain_lo": iv.lo,
            "gain_hi": iv.hi,
            "p_value": iv.p_value,
            "significant": iv.significant,
        }
    return out


def worse_metrics(comparison: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every metric of a :func:`metric_comparison` that got significantly worse, as "name 2.5x worse";
    not the diagnostic ones (rwnd_limited_pct of a flow that now fills its path is no cost)."""
    out = []
    for name, c in comparison.items():
        info = METRICS.get(name)
        if info is not None and info.diagnostic:
            continue
        if c.get("significant") and c.get("gain", 1.0) < 1.0:
            worse = 1.0 / c["gain"] if c["gain"] > 0 else math.inf
            # from zero (keepalive probes where keepalive was off, rwnd_limited_pct) there is no ratio, only the change
            times = f" {worse:.3g}x" if math.isfinite(worse) else ""
            out.append(f"{name}{times} worse ({c['baseline']:.4g} -> {c['recommended']:.4g})")
    return out


def _measurement_evidence(m: Measurement) -> dict[str, Any]:
    return {
        "metrics": {
            k: {"median": s.median, "lo": s.lo, "hi": s.hi, "n": len(s.samples)} for k, s in m.metrics.items()
        },
        **({"computed": dict(m.computed)} if m.computed else {}),  # from the settings: no interval
        **({"notes": list(m.notes)} if m.notes else {}),
        # the load generator held these runs back: the figures are a pessimistic bound for the settings
        **({"held_back": m.held_back} if m.held_back else {}),
        "counters": {side: dict(c) for side, c in m.counters.items()},
        "repeats": m.repeats,
    }


_HEALTH_KEYS = (
    "delivered_bps",
    "rate_bps",
    "tun_drops",
    "dropped_queue",
    "late_packets",
    "late_p99_ms",
    "line_cpu_share",
    "offload",
)


def _path_health(result: StudyResult, path: NetworkPath, ceiling: Any | None) -> dict[str, Any]:
    """[evidence.path_health]: what the emulator was asked for, what it carried, and how it behaved."""
    out: dict[str, Any] = {
        "requested_rate_bps": path.rate_bps,
        "invalid_trials": sum(1 for t in result.trials if t.state is TrialState.INVALID),
        "baseline": {k: result.baseline.health[k] for k in _HEALTH_KEYS if k in result.baseline.health},
        "recommended": {k: result.best.health[k] for k in _HEALTH_KEYS if k in result.best.health},
    }
    if ceiling is not None:
        out["ceiling"] = ceiling.to_dict()
        out["emulator_bound"] = not ceiling.holds(path.rate_bps)
    return out


def _emulator_bound(result: StudyResult, ceiling: Any, rate_bps: float) -> StudyResult:
    """No verdict may rest on a path the emulator could not carry: keep the defaults, claim nothing."""
    text = (
        f"no verdict: the emulated path could not carry {rate_bps / 1e6:,.0f} Mbit/s on this machine "
        f"({ceiling.describe()}); keep the defaults"
    )
    # the candidate's figures stay in the journal and in [evidence.best_candidate], not as "recommended"
    return replace(
        result,
        assignment={},
        best=result.baseline,
        best_score=result.baseline_score,
        verdict=Verdict(False, result.verdict.interval, text),
        leader=result.leader or dict(result.assignment),
    )


def baseline_evidence(space: Space, source: str) -> dict[str, Any]:
    """``[evidence.baseline]``'s provenance: where the baseline came from and the value of every knob in
    the space and every catalogue sysctl read in the target ("unset" for a socket option left to the
    application), so a reader (and ``tuner apply``) can tell what the gain was measured against."""
    settings: dict[str, Any] = {k: v for k, v in space.baseline.items() if k not in NOT_COPIED}
    for name in space.knobs:
        settings.setdefault(name, None)
    return {"source": source, "settings": dict(sorted(settings.items()))}


def _evidence(
    result: StudyResult,
    space: Space,
    objective: Objective,
    config: SearchConfig,
    workload: Workload,
    path: NetworkPath,
    ceiling: Any | None = None,
    source: str = "host",
) -> dict[str, Any]:
    iv = result.verdict.interval
    changed = {k: {"from": space.baseline.get(k), "to": v} for k, v in result.assignment.items()}
    evidence: dict[str, Any] = {
        "verdict": result.verdict.text,
        "significant": result.verdict.significant,
        "confirmed": result.confirmed,
        "objective": objective.name,
        "objective_description": objective.describe(),
        "score_baseline": result.baseline_score.value,
        "score_recommended": result.best_score.value,
        "gain": iv.gain,
        "gain_lo": iv.lo,
        "gain_hi": iv.hi,
        "confidence": iv.confidence,
        "test": "Mann-Whitney U (scipy.stats.mannwhitneyu) on per-repeat scores; interval: percentile bootstrap "
        "of the ratio of medians (scipy.stats.bootstrap)",
        "p_value": iv.p_value,
        "samples_baseline": iv.n_baseline,
        "samples_recommended": iv.n_candidate,
        "min_samples": MIN_REPEATS,
        "trials": result.search_trials,
        "failed_trials": result.failed_trials,
        "measurements": sum(1 for t in result.trials if t.measurement is not None),
        "stop_reason": result.stop_reason,
        "sampler": config.sampler,
        "seed": config.seed,
        "budget": config.budget,
        "repeats": probe_settings(workload.kind, config, path)[0],
        "duration_s": probe_settings(workload.kind, config, path)[1],
        "elapsed_s": round(result.elapsed, 1),
        "backend": result.baseline.backend,
        "path": path.describe(),
        "machine": machine_info(),
        "tuner_version": __version__,
        "space": {d.knob: list(d.levels) for d in space.dimensions},
        "changed": changed,
        "baseline": {**_measurement_evidence(result.baseline), **baseline_evidence(space, source)},
        "recommended": _measurement_evidence(result.best),
        "metrics": metric_comparison(result.baseline, result.best, seed=config.seed),
        "path_health": _path_health(result, path, ceiling),
    }
    if not result.verdict.significant and result.leader:
        evidence["best_candidate"] = {
            "assignment": dict(result.leader),
            "gain": result.leader_interval.gain if result.leader_interval else 1.0,
        }
    return _toml(evidence)


@dataclass
class _ProbeMeasure:
    """The real probe in the search's sandbox; prunable (a search trial may run its first repeat alone)."""

    workload: Workload
    path: NetworkPath
    repeats: int
    duration: float
    sandbox: Any
    target: TargetBaseline | None = None
    pool: SideBySide | None = None  # the kind's repeats run side by side, each in its own sandbox

    @property
    def prunable(self) -> bool:
        return self.pool is None  # side by side, a trial's repeats all run at once: nothing to stop early

    @property
    def side_by_side(self) -> Batch | None:
        if self.pool is None:
            return None
        return Batch(self.pool.workers, self.repeats, self.many)

    def many(self, requests: Sequence[tuple[Mapping[str, Value], int]]) -> list[Measurement]:
        assert self.pool is not None
        return self.pool.measure([Request(a, r) for a, r in requests])

    def __call__(self, assignment: Mapping[str, Value], repeats: int | None = None) -> Measurement:
        if self.pool is not None:
            return self.many([(assignment, repeats or self.repeats)])[0]
        return run_probe(
            self.workload,
            self.path,
            assignment,
            repeats=repeats or self.repeats,
            duration=self.duration,
            sandbox=self.sandbox,
            target=self.target,
        )


def _probe_measure(
    workload: Workload,
    path: NetworkPath,
    config: SearchConfig,
    sandbox: Any,
    target: TargetBaseline | None = None,
    pool: SideBySide | None = None,
) -> Measure:
    repeats, duration = probe_settings(workload.kind, config, path)
    return _ProbeMeasure(workload, path, repeats, duration, sandbox, target, pool)


def recommend(
    workload: Workload,
    path: NetworkPath,
    config: SearchConfig,
    progress: Callable[[TrialEvent], None] | None = None,
    *,
    measure: Measure | None = None,
    live: Mapping[str, Value] | None = None,
    ceiling: Any | None = None,
    notify: Callable[[str], None] | None = None,
    target: TargetBaseline | None = None,
) -> Recommendation:
    """Search ``workload`` over ``path`` and return the recommendation with its profile.

    ``target`` is the baseline being tuned (default: this host's live values, see
    :mod:`tuner.probe.target`): its per-namespace sysctls are copied into both sandbox namespaces and
    its host-only limits are emulated per socket. ``measure`` and ``live`` replace the probe and the
    live values (tests of the search mechanics). With a rate on the path and the real probe, the
    emulator's ceiling at that rate is measured first (:mod:`tuner.sandbox.ceiling`; ``ceiling`` gives
    one instead): when the emulator cannot carry the path, ``notify`` hears it before the search, and the
    result claims nothing (keep the defaults; ``[evidence.path_health]`` says why).
    """
    objective = parse_objective(config.objective, workload.kind)
    budget = config.budget or default_budget(workload.kind)
    config = replace(config, budget=budget)
    space_knobs(workload.kind, config.knobs, config.no_knobs)  # bad flags fail before a sandbox is built
    facts = KernelFacts.read()
    if ceiling is None and measure is None and path.rate_bps:
        from tuner.sandbox.ceiling import measure_ceiling  # only needed for real probes

        ceiling = measure_ceiling(path.rate_bps)
    bound = False
    if ceiling is not None and path.rate_bps and not ceiling.holds(path.rate_bps):
        bound = True
        message = (
            f"the emulated path cannot carry {path.rate_bps / 1e6:,.0f} Mbit/s on this machine now: "
            f"{ceiling.describe()}. The search runs, but no verdict will rest on it."
        )
        log.warning("search.emulator_bound", rate=path.rate_bps, delivered=ceiling.delivered_bps)
        if notify is not None:
            notify(message)
    with contextlib.ExitStack() as stack:
        if measure is None:
            from tuner.sandbox import Sandbox, Side  # only needed for real probes

            target = target or read_target()
            start = target.sandbox_sysctls()
            sandbox = stack.enter_context(Sandbox(path, client_sysctls=start, server_sysctls=start))
            # read back in the sandbox: what the trials really start from
            live = {
                **target.host,
                **sandbox.run(Side.CLIENT, live_sysctls, Scope.NETNS),
                **target.emulated_sysctls(),
            }
            pool = None
            width = spec(workload.kind).side_by_side
            if width > 1:
                _, duration = probe_settings(workload.kind, config, path)
                pool = stack.enter_context(SideBySide(workload, path, duration, target, width))
            measure = _probe_measure(workload, path, config, sandbox, target, pool)
        elif live is None:
            live = target.settings if target is not None else live_baseline()
        source = target.source if target is not None else "given"
        space = build_space(
            workload.kind, live, facts=facts, add=config.knobs, remove=config.no_knobs, path=path
        )
        sampler = make_sampler(config.sampler, space, seed=config.seed, budget=budget)
        journal = None
        if config.journal is not None:
            header = {
                "workload": workload.to_dict(),
                "path": path.to_dict(),
                "space": space.to_dict(),
                "objective": objective.name,
                "sampler": config.sampler,
                "seed": config.seed,
            }
            journal = (SearchJournal.resume if config.resume else SearchJournal.create)(
                config.journal, header
            )
        log.info(
            "search.started",
            workload=workload.kind.value,
            path=path.describe(),
            knobs=list(space.knobs),
            points=space.size,
            sampler=config.sampler,
            budget=budget,
        )
        study = Study(space, objective, sampler, measure, config=config, journal=journal, progress=progress)
        result = study.run()
    if bound and path.rate_bps:
        result = _emulator_bound(result, ceiling, path.rate_bps)
    if result.assignment:  # a verdict names every metric the recommended setting made significantly worse
        text = result.verdict.text
        if result.baseline_score.reason and "lower bound" in result.baseline_score.reason:
            text += (
                " - at least: the baseline's score is a measured lower bound ("
                + result.baseline_score.reason
                + ")"
            )
        worse = worse_metrics(metric_comparison(result.baseline, result.best, seed=config.seed))
        if worse:
            text += f"; worse: {', '.join(worse)}"
        result = replace(result, verdict=replace(result.verdict, text=text))
    name = config.name or profile_name(workload, path)
    description = f"{workload.kind.value} workload over {path.describe()}: {result.verdict.text}"
    try:
        profile = Profile.from_assignment(
            name,
            result.assignment,
            description=description,
            workload=workload,
            path=path,
            evidence=_evidence(result, space, objective, config, workload, path, ceiling, source),
        )
    except TunerError:
        log.error("search.profile_invalid", assignment=dict(result.assignment))
        raise
    log.info(
        "search.finished",
        verdict=result.verdict.text,
        changed=dict(result.assignment),
        trials=result.search_trials,
        elapsed=round(result.elapsed, 2),
    )
    return Recommendation(
        workload,
        path,
        result.baseline,
        result.best,
        dict(result.assignment),
        result.trials,
        result.verdict,
        profile,
        render_socket_snippets(profile),
        space,
        objective.name,
        result,
    )
