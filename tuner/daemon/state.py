"""The daemon's persistent state: one JSON file, written atomically, read by `tuner status`.

A state file that cannot be read (truncated, garbage, an unknown schema) is renamed aside as
``state.json.corrupt-<time>`` and the daemon starts from an empty state; that is reported, not fatal.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.daemon.regression import GuardWatch
from tuner.daemon.watch import SearchQueue, ServiceRecord
from tuner.inputs import parse_json
from tuner.logs import get_logger
from tuner.trusted import atomic_write, read_limited

__all__ = [
    "PROFILES_DIR",
    "STATE_FILE",
    "STATE_VERSION",
    "AppliedRecord",
    "DaemonState",
    "DaemonStats",
    "ManualKnob",
    "OwnedKnob",
    "PendingApply",
    "ProfileRecord",
    "SearchActivity",
    "StateWriter",
    "jsonable",
    "load_state",
    "read_state",
    "save_state",
]

log = get_logger(__name__)
STATE_VERSION = 1
STATE_FILE = "state.json"
PROFILES_DIR = "profiles"  # profiles the daemon wrote or took from the inbox (one per service, kept current)
MAX_STATE_BYTES = 16 << 20  # the state holds recent activity only; a few hundred KiB at most
_KEEP_PROFILES = 200
_KEEP_APPLIED = 200
_KEEP_PENDING = 200
_REFRESH = 30.0  # seconds between rewrites of an unchanged state (fresh last observation)
_VOLATILE = ("current", "last_seen", "streak", "workload", "path", "process")


def jsonable(value: Any) -> Any:
    """Knob values and the like as JSON data (tuples become lists)."""
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


@dataclass
class AppliedRecord:
    apply_id: str
    profile: str  # profile name
    file: str  # the profile file
    service: str | None
    at: float
    changes: dict[str, dict[str, Any]]  # knob -> {"old": ..., "new": ...}
    skipped: dict[str, str]
    outcome: str  # guarding | kept | rolled back | failed | rolled back on stop
    reasons: list[str] = field(default_factory=list)
    journal: str = ""  # the Applier's state directory of this apply
    ended: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "apply_id": self.apply_id,
            "profile": self.profile,
            "file": self.file,
            "service": self.service,
            "at": self.at,
            "changes": jsonable(self.changes),
            "skipped": dict(self.skipped),
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "journal": self.journal,
            "ended": self.ended,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AppliedRecord:
        return cls(
            str(d["apply_id"]),
            str(d["profile"]),
            str(d["file"]),
            d.get("service"),
            float(d["at"]),
            {str(k): dict(v) for k, v in d.get("changes", {}).items()},
            {str(k): str(v) for k, v in d.get("skipped", {}).items()},
            str(d["outcome"]),
            [str(r) for r in d.get("reasons", [])],
            str(d.get("journal", "")),
            None if d.get("ended") is None else float(d["ended"]),
        )


@dataclass
class OwnedKnob:
    """A value the daemon wrote and still answers for."""

    value: Any
    apply_id: str
    profile: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": jsonable(self.value),
            "apply_id": self.apply_id,
            "profile": self.profile,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OwnedKnob:
        return cls(d["value"], str(d["apply_id"]), str(d["profile"]), float(d["at"]))


@dataclass
class ManualKnob:
    """A knob someone else changed after the daemon set it: left alone until released."""

    since: float
    expected: Any
    found: Any
    writer: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "expected": jsonable(self.expected),
            "found": jsonable(self.found),
            "writer": self.writer,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ManualKnob:
        return cls(float(d["since"]), d.get("expected"), d.get("found"), str(d.get("writer", "")))


@dataclass
class ProfileRecord:
    name: str
    file: str
    service: str | None
    created: float
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "service": self.service,
            "created": self.created,
            "reason": self.reason,
            "summary": jsonable(self.summary),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProfileRecord:
        return cls(
            str(d["name"]),
            str(d["file"]),
            d.get("service"),
            float(d["created"]),
            str(d.get("reason", "")),
            dict(d.get("summary", {})),
        )


@dataclass(frozen=True)
class PendingApply:
    """A profile waiting for a guarded apply (apply mode): a search's result or a staged profile."""

    file: str  # the profile file
    service: str | None  # the service it was searched for; None when staged by the administrator
    reason: str  # "search result" | "staged"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "service": self.service, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PendingApply:
        service = d.get("service")
        return cls(str(d["file"]), None if service is None else str(service), str(d.get("reason", "")))


@dataclass
class SearchActivity:
    service: str
    reason: str
    pid: int
    started: float
    trial: int = 0
    budget: int = 0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "reason": self.reason,
            "pid": self.pid,
            "started": self.started,
            "trial": self.trial,
            "budget": self.budget,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchActivity:
        return cls(
            str(d["service"]),
            str(d.get("reason", "")),
            int(d["pid"]),
            float(d["started"]),
            int(d.get("trial", 0)),
            int(d.get("budget", 0)),
            str(d.get("detail", "")),
        )


def _counts(d: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in dict(d or {}).items()}


@dataclass
class DaemonStats:
    """Running totals behind the Prometheus counters; kept in the state so they survive a restart."""

    searches: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> result -> searches
    trials: dict[str, int] = field(default_factory=dict)  # kind -> trials measured
    invalid_trials: dict[str, int] = field(default_factory=dict)  # kind -> trials on an invalid run
    search_seconds: dict[str, float] = field(default_factory=dict)  # kind -> wall seconds searching
    knobs_applied: int = 0  # knob writes by guarded applies
    rollbacks: dict[str, int] = field(default_factory=dict)  # outcome -> applies rolled back

    def count_search(self, kind: str, result: str, seconds: float, trials: int = 0, invalid: int = 0) -> None:
        by_result = self.searches.setdefault(kind, {})
        by_result[result] = by_result.get(result, 0) + 1
        self.trials[kind] = self.trials.get(kind, 0) + max(trials, 0)
        self.invalid_trials[kind] = self.invalid_trials.get(kind, 0) + max(invalid, 0)
        self.search_seconds[kind] = self.search_seconds.get(kind, 0.0) + max(seconds, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "searches": {k: dict(v) for k, v in self.searches.items()},
            "trials": dict(self.trials),
            "invalid_trials": dict(self.invalid_trials),
            "search_seconds": dict(self.search_seconds),
            "knobs_applied": self.knobs_applied,
            "rollbacks": dict(self.rollbacks),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DaemonStats:
        return cls(
            searches={str(k): _counts(v) for k, v in dict(d.get("searches") or {}).items()},
            trials=_counts(d.get("trials")),
            invalid_trials=_counts(d.get("invalid_trials")),
            search_seconds={str(k): float(v) for k, v in dict(d.get("search_seconds") or {}).items()},
            knobs_applied=int(d.get("knobs_applied", 0)),
            rollbacks=_counts(d.get("rollbacks")),
        )


@dataclass
class DaemonState:
    pid: int = 0
    started: float = 0.0
    updated: float = 0.0
    mode: str = ""
    enabled: bool = True
    config: str = ""
    netns: str | None = None
    activity: str = ""
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    queue: SearchQueue = field(default_factory=SearchQueue)
    search: SearchActivity | None = None
    profiles: list[ProfileRecord] = field(default_factory=list)
    applied: list[AppliedRecord] = field(default_factory=list)
    owned: dict[str, OwnedKnob] = field(default_factory=dict)
    manual: dict[str, ManualKnob] = field(default_factory=dict)
    guard: GuardWatch | None = None
    pending: list[PendingApply] = field(default_factory=list)  # profiles waiting for a guarded apply
    rejected: dict[str, str] = field(default_factory=dict)  # profile file -> why it is never applied again
    last_observation: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # recent problems worth showing in status
    stats: DaemonStats = field(default_factory=DaemonStats)

    def note_problem(self, message: str, *, keep: int = 20) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        self.problems = ([*self.problems, f"{stamp} {message}"])[-keep:]

    def add_profile(self, record: ProfileRecord) -> None:
        """Record a profile written or staged (replacing an older record of the same file); a new
        profile is a new candidate, whatever became of the file's previous content."""
        self.profiles = [p for p in self.profiles if p.file != record.file] + [record]
        self.rejected.pop(record.file, None)

    def queue_apply(self, item: PendingApply) -> None:
        """Queue a profile for a guarded apply, once (a newer request for the same file goes last)."""
        self.pending = [p for p in self.pending if p.file != item.file] + [item]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "pid": self.pid,
            "started": self.started,
            "updated": self.updated,
            "mode": self.mode,
            "enabled": self.enabled,
            "config": self.config,
            "netns": self.netns,
            "activity": self.activity,
            "services": {k: r.to_dict() for k, r in self.services.items()},
            "queue": self.queue.to_list(),
            "search": self.search.to_dict() if self.search else None,
            "profiles": [p.to_dict() for p in self.profiles[-_KEEP_PROFILES:]],
            "applied": [a.to_dict() for a in self.applied[-_KEEP_APPLIED:]],
            "owned": {k: o.to_dict() for k, o in self.owned.items()},
            "manual": {k: m.to_dict() for k, m in self.manual.items()},
            "guard": self.guard.to_dict() if self.guard else None,
            "pending": [p.to_dict() for p in self.pending[-_KEEP_PENDING:]],
            "rejected": dict(self.rejected),
            "last_observation": jsonable(self.last_observation),
            "problems": list(self.problems),
            "stats": self.stats.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DaemonState:
        if not isinstance(d, dict):
            raise ValueError("the state is not a JSON object")  # noqa: TRY004 (a load error, set aside)
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {d.get('version')!r}")
        return cls(
            pid=int(d.get("pid", 0)),
            started=float(d.get("started", 0.0)),
            updated=float(d.get("updated", 0.0)),
            mode=str(d.get("mode", "")),
            enabled=bool(d.get("enabled", True)),
            config=str(d.get("config", "")),
            netns=d.get("netns"),
            activity=str(d.get("activity", "")),
            services={str(k): ServiceRecord.from_dict(v) for k, v in d.get("services", {}).items()},
            queue=SearchQueue.from_list(d.get("queue", [])),
            search=SearchActivity.from_dict(d["search"]) if d.get("search") else None,
            profiles=[ProfileRecord.from_dict(p) for p in d.get("profiles", [])],
            applied=[AppliedRecord.from_dict(a) for a in d.get("applied", [])],
            owned={str(k): OwnedKnob.from_dict(v) for k, v in d.get("owned", {}).items()},
            manual={str(k): ManualKnob.from_dict(v) for k, v in d.get("manual", {}).items()},
            guard=GuardWatch.from_dict(d["guard"]) if d.get("guard") else None,
            pending=[PendingApply.from_dict(p) for p in d.get("pending", [])],
            rejected={str(k): str(v) for k, v in d.get("rejected", {}).items()},
            last_observation=dict(d.get("last_observation", {})),
            problems=[str(p) for p in d.get("problems", [])],
            stats=DaemonStats.from_dict(d.get("stats") or {}),
        )


def save_state(state: DaemonState, path: Path) -> None:
    state.updated = time.time()
    atomic_write(path, json.dumps(state.to_dict(), indent=1, sort_keys=False).encode() + b"\n")


class StateWriter:
    """Writes the state file when something changed, or to refresh the last observation at most every
    ``_REFRESH`` seconds (an idle daemon does not rewrite and fsync it every interval)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: dict[str, Any] | None = None
        self._saved_at = 0.0

    def save(self, state: DaemonState, *, force: bool = False) -> None:
        material = state.to_dict()
        material.pop("updated")
        material["last_observation"] = bool(material["last_observation"])
        for rec in material["services"].values():  # what changes with every observation
            for volatile in _VOLATILE:
                rec.pop(volatile, None)
        now = time.monotonic()
        if not force and material == self._saved and now - self._saved_at < _REFRESH:
            return
        try:
            save_state(state, self.path)
        except OSError as exc:  # e.g. a full disk: keep running, say so, try again next time
            log.error("state.save_failed", file=str(self.path), error=str(exc))
            return
        self._saved, self._saved_at = material, now


def read_state(path: Path) -> DaemonState:
    """Parse a state file; raises ``ValueError`` (or OSError) if it cannot be used."""
    raw = read_limited(path, MAX_STATE_BYTES, what="state file")  # ValueError when too large
    try:
        data = parse_json(raw, limit=32, allow_nan=True)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    try:
        return DaemonState.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"unexpected content ({type(exc).__name__}: {exc})") from None


def load_state(path: Path) -> tuple[DaemonState, str | None]:
    """The state in ``path`` (an empty state if there is none) and a problem message if it was corrupt.

    A corrupt file is renamed aside, never deleted, so that it can be inspected.
    """
    if not path.exists():
        return DaemonState(), None
    try:
        return read_state(path), None
    except (ValueError, OSError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            os.replace(path, aside)
        except OSError as move_exc:
            problem = f"state file {path} is unusable ({exc}) and could not be set aside ({move_exc}); starting empty"
        else:
            problem = f"state file {path} was unusable ({exc}); set aside as {aside.name}, starting empty"
        log.error("state.corrupt", file=str(path), error=str(exc), set_aside=str(aside))
        return DaemonState(), problem
