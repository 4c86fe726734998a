"""The search child: `python -m tuner.daemon.searcher`, started by the daemon for one search.

Reads a :class:`~tuner.daemon.runner.SearchJob` (JSON) on stdin, lowers its own CPU and I/O priority,
then imports the search stack (scikit-optimize and numpy load here, never in the daemon), runs
``tuner.search.recommend`` and saves the profile atomically. Progress and the outcome go to stdout as
JSON lines (:class:`~tuner.daemon.runner.SearchEvent`); logs go to stderr (the daemon's journal).

SIGTERM ends the search by raising SystemExit, so every sandbox is left through its context manager
and its namespaces are removed before the process exits.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TextIO

from tuner.daemon.priority import lower_priority
from tuner.daemon.runner import SearchEvent, SearchJob
from tuner.errors import TunerError
from tuner.logs import configure, get_logger

__all__ = ["main"]

log = get_logger(__name__)


class _Stopped(SystemExit):
    """The daemon asked this search to end (SIGTERM)."""


def _on_term(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: do not interrupt the cleanup it starts
    raise _Stopped(128 + signum)


def _events_channel() -> TextIO:
    """The event stream: the original stdout. fd 1 becomes stderr, so that nothing a library prints can
    corrupt the events."""
    fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(fd, "w", buffering=1)


def _emit(channel: TextIO, kind: str, **data: Any) -> None:
    try:
        channel.write(SearchEvent(kind, data).to_line())
        channel.flush()
    except (BrokenPipeError, OSError):
        pass  # the daemon went away; the search still ends normally


def _run(job: SearchJob, channel: TextIO) -> int:
    from tuner.knobs import json_value
    from tuner.probe.target import read_target
    from tuner.profiles import save_profile
    from tuner.search import SearchConfig, TrialEvent, recommend  # the heavy imports
    from tuner.workload import NetworkPath, Workload

    workload, path = Workload.from_dict(job.workload), NetworkPath.from_dict(job.path)
    config = SearchConfig(
        budget=job.budget,
        time_budget=job.time,
        repeats=job.repeats,
        duration=job.duration,
        name=job.profile_name,
    )

    def progress(event: TrialEvent) -> None:
        best = f"best {event.best.value:.4g}" if event.best is not None else ""
        _emit(
            channel,
            "trial",
            trial=event.done,
            budget=event.total,
            phase=event.phase,
            detail=event.message or best,
        )

    # the baseline is the daemon's target (this host, or the namespace it watches)
    rec = recommend(workload, path, config, progress=progress, target=read_target(job.netns))
    evidence = {**rec.profile.evidence, "daemon": {"service": job.service, "trigger": job.reason}}
    profile = replace(rec.profile, evidence=evidence)
    save_profile(profile, job.profile_file)
    changed = {k: json_value(v) for k, v in rec.assignment.items()}
    _emit(
        channel,
        "done",
        service=job.service,
        name=profile.name,
        file=job.profile_file,
        summary={
            "gain": rec.verdict.text,
            "significant": rec.verdict.significant,
            "changed": changed,
            "objective": rec.objective,
            "trials": len(rec.trials),
            "invalid_trials": sum(1 for t in rec.trials if t.state.value == "invalid"),
            "gains": _gains(profile.evidence),
            "path_health": _path_health(rec.best),
        },
    )
    log.info("search.done", service=job.service, file=job.profile_file, verdict=rec.verdict.text)
    return 0


def _gains(evidence: Mapping[str, Any]) -> dict[str, float]:
    """metric -> times better, as the profile's evidence states it (for the daemon's metrics)."""
    metrics = evidence.get("metrics")
    if not isinstance(metrics, Mapping):
        return {}
    return {
        str(k): float(v["gain"])
        for k, v in metrics.items()
        if isinstance(v, Mapping) and isinstance(v.get("gain"), (int, float))
    }


def _path_health(best: Any) -> dict[str, float]:
    """The emulated path's health of the recommended setting's measurement: late p99 (ms), drops, CPU (s)."""
    health = dict(getattr(best, "health", None) or {})
    out = {"dropped": float(sum(health.get(k, 0) or 0 for k in ("dropped_queue", "tun_drops")))}
    for key, name in (("late_p99_ms", "late_p99_ms"), ("cpu_s", "cpu_seconds")):
        if isinstance(health.get(name), (int, float)):
            out[key] = float(health[name])
    return out


def main() -> int:
    channel = _events_channel()
    configure("info", json=True, stream=sys.stderr)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the daemon, which stops us
    try:
        job = SearchJob.from_json(sys.stdin.read())
    except (ValueError, TypeError) as exc:
        _emit(channel, "failed", error=f"unreadable job: {exc}")
        return 2
    lower_priority(job.nice, job.io_class)
    _emit(channel, "started", service=job.service, pid=os.getpid())
    try:
        return _run(job, channel)
    except _Stopped:
        log.info("search.stopped", service=job.service)
        _emit(channel, "failed", service=job.service, error="stopped by the daemon")
        raise
    except TunerError as exc:
        log.error("search.failed", service=job.service, error=exc.message, hint=exc.hint)
        _emit(channel, "failed", service=job.service, error=exc.message, hint=exc.hint)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
