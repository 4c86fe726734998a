"""What a report shows, read from a search journal and/or a profile: plain data, no plotting.

A journal (``tuner recommend --journal``) has every trial with its samples; a profile has the verdict,
the baseline, the path's health and the settings, but only medians. A report from both is complete; from
a journal of a search still running it is partial (no verdict yet).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from tuner.errors import InputError
from tuner.inputs import parse_json
from tuner.profiles import Profile, load_profile
from tuner.trusted import read_limited

__all__ = ["ReportData", "TrialPoint", "read_journal", "report_data"]

MAX_JOURNAL_BYTES = 64 << 20


@dataclass(frozen=True)
class TrialPoint:
    number: int
    role: str  # baseline, search, simplify, confirm
    state: str  # complete, failed, invalid, rejected
    score: float | None
    feasible: bool
    assignment: Mapping[str, Any]
    samples: Mapping[str, tuple[float, ...]]  # metric -> per-repeat values
    note: str = ""  # why it failed / was invalid / pruned
    direction: str = ""  # "min" or "max", as the objective's score says

    @property
    def usable(self) -> bool:
        return (
            self.state == "complete"
            and self.score is not None
            and self.feasible
            and math.isfinite(self.score)
        )

    @property
    def value(self) -> float:
        """The score of a usable trial (see :attr:`usable`)."""
        if self.score is None:
            raise ValueError(f"trial {self.number} has no score")
        return self.score


@dataclass
class ReportData:
    title: str
    objective: str = ""
    direction: str = "min"
    trials: list[TrialPoint] = field(default_factory=list)
    space: Mapping[str, list[Any]] = field(default_factory=dict)  # knob -> levels
    recommended: Mapping[str, Any] | None = None  # None: not decided yet
    profile: Profile | None = None
    header: Mapping[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return self.profile is None

    @property
    def evidence(self) -> Mapping[str, Any]:
        return self.profile.evidence if self.profile is not None else {}

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "min" else a > b

    def samples_of(self, assignment: Mapping[str, Any]) -> dict[str, list[float]]:
        """Every sample of every metric over the trials of exactly ``assignment``."""
        out: dict[str, list[float]] = {}
        key = _key(assignment)
        for t in self.trials:
            if t.state == "complete" and _key(t.assignment) == key:
                for metric, xs in t.samples.items():
                    out.setdefault(metric, []).extend(xs)
        return out

    def best_assignment(self) -> Mapping[str, Any]:
        best: TrialPoint | None = None
        for t in self.trials:
            if t.usable and t.role == "search" and (best is None or self.better(t.value, best.value)):
                best = t
        return best.assignment if best is not None else {}


def _key(assignment: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in assignment.items()))


def read_journal(file: FilePath) -> tuple[dict[str, Any], list[TrialPoint]]:
    """The header and trials of a search journal; a last line cut short (a search still writing) is skipped."""
    try:
        raw = read_limited(file, MAX_JOURNAL_BYTES, what="journal")
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{file}: cannot read the journal: {exc}", hint="give the file of --journal"
        ) from None
    header: dict[str, Any] = {}
    trials: list[TrialPoint] = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = parse_json(line, allow_nan=True)
        except ValueError:
            continue  # the line being written right now
        if not isinstance(record, dict):
            continue
        if record.get("type") == "header":
            header = record
        elif record.get("type") == "trial":
            trials.append(_trial(record))
    if not header:
        raise InputError(
            f"{file}: not a tuner search journal (no header line)",
            hint="give the file of `tuner recommend --journal`",
        )
    return header, trials


def _trial(r: Mapping[str, Any]) -> TrialPoint:
    score = r.get("score") or {}
    m = r.get("measurement") or {}
    samples = {
        str(k): tuple(float(x) for x in (v or {}).get("samples", ()) if isinstance(x, (int, float)))
        for k, v in dict(m.get("metrics") or {}).items()
    }
    value = score.get("value")
    note = r.get("error") or m.get("invalid_reason") or score.get("reason") or ""
    return TrialPoint(
        number=int(r.get("number", 0)),
        role=str(r.get("role", "search")),
        state=str(r.get("state", "complete")),
        score=float(value) if isinstance(value, (int, float)) else None,
        feasible=bool(score.get("feasible", True)),
        assignment=dict(r.get("assignment") or {}),
        samples=samples,
        note=str(note),
        direction=str(score.get("direction", "")),
    )


def report_data(profile_file: FilePath | None, journal_file: FilePath | None) -> ReportData:
    """Everything a report needs, from a profile, a journal, or both."""
    profile = load_profile(profile_file) if profile_file is not None else None
    header: dict[str, Any] = {}
    trials: list[TrialPoint] = []
    if journal_file is not None:
        header, trials = read_journal(journal_file)
    workload = dict(header.get("workload") or {})
    title = (
        profile.name if profile is not None else f"search of {workload.get('kind', 'a workload')} (running)"
    )
    data = ReportData(
        title=title,
        trials=trials,
        profile=profile,
        header=header,
        sources=[str(f) for f in (profile_file, journal_file) if f is not None],
    )
    ev = data.evidence
    data.objective = str(ev.get("objective") or header.get("objective") or "")
    scored = next((t for t in trials if t.direction), None)
    data.direction = (
        scored.direction if scored is not None else ("max" if data.objective.endswith(":max") else "min")
    )
    # the journal's space keeps "unset" (None) levels, which TOML evidence cannot hold
    space = {
        d.get("knob"): d.get("levels", [])
        for d in (header.get("space") or {}).get("dimensions", [])
        if isinstance(d, dict)
    } or ev.get("space")
    data.space = {str(k): list(v) for k, v in dict(space or {}).items() if k}
    if profile is not None:
        data.recommended = (
            {
                k: (v["to"] if isinstance(v, dict) and "to" in v else v)
                for k, v in dict(ev.get("changed") or {}).items()
            }
            if "changed" in ev
            else dict(profile.assignment)
        )
    return data
