"""The Study: one search, from the baseline to a verdict a sceptical engineer would accept.

1. The baseline (nothing set: the live / kernel-default values) is measured first.
2. The sampler proposes points; each becomes a checked candidate (see :mod:`tuner.search.space`) and is
   measured through ``measure``. A candidate that breaks a catalogue rule never reaches ``measure``.
   A trial that raises, or whose measurement failed or is invalid, is recorded and the search goes on.
3. The search stops on the trial budget, the time budget, or convergence (the sampler keeps proposing
   settings already measured, has nothing left, or ``patience`` trials brought nothing better).
4. The leading candidates and the baseline are measured again, interleaved, so the winner is judged on
   fresh samples taken side by side; the gain gets a bootstrap confidence interval. (Side by side, that
   first round may ride in a batch of the search's end, for the baseline and the leaders known then; it
   counts only when it holds every leader the search ends with, see ``TrialRole.AHEAD``.) Among the settings
   that perform like the best within noise, the cheapest wins (see :func:`tuner.search.space.knob_cost`).
   When even that one is not clearly better than the baseline the verdict is: keep the defaults.

Every trial is appended to the journal (fsynced) before the next starts, so an interrupted study resumes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from tuner.errors import InputError, KnobError, SearchError
from tuner.kinds import spec
from tuner.knobs import Value, json_value
from tuner.logs import get_logger
from tuner.probe.measurement import Measurement, pool_measurements
from tuner.search.journal import SearchJournal
from tuner.search.objective import Objective, Score, gain
from tuner.search.samplers import DEFAULT_BUDGET, SAMPLERS, Sampler, ask_batch, default_budget
from tuner.search.space import Candidate, Space, assignment_key
from tuner.search.stats import CONFIDENCE, MIN_REPEATS, GainInterval, gain_interval, looks_confidence
from tuner.workload import WorkloadKind

__all__ = [
    "DEFAULT_BUDGET",
    "Batch",
    "Measure",
    "SearchConfig",
    "Study",
    "StudyResult",
    "Trial",
    "TrialEvent",
    "TrialRole",
    "TrialState",
    "Verdict",
    "default_budget",
    "pool_measurements",
]

log = get_logger(__name__)

_MAX_REJECTED_IN_ROW = 50
_MAX_DUPLICATES_IN_ROW = 3
# Leaders a confirmation refused are replaced by the next promising candidates this many times at most.
_CONFIRM_REPLACEMENTS = 2
# What a sampler is told for a setting that was measured but refused (it killed a live connection, broke
# a latency bound, lost throughput): its own value made this much worse (log 2: half as good). Told as
# "worse than anything" instead, the refusal would teach the model that the whole region is bad, when
# the best feasible settings are often one step away (keepalive: 3 probes instead of 1, the same short
# timers); bench/search_seeds.py, keepalive worst-of-10 quality 0.29 -> see bench/results/search_seeds.md.
# Graded by the violation (Score.violation, see Study._told_loss): with a flat log 2, keepalive settings
# that kill forty live connections a repeat (a user timeout of 1 s) looked better to the model than a
# feasible 12 s detection, and its batches kept proposing user timeouts (keepalive median over 20 seeds
# at a budget of 24: 0.52 flat -> 0.88 graded).
INFEASIBLE_PENALTY = math.log(2.0)


class Measure(Protocol):
    """Runs the workload under an assignment and returns its measurement (the probe, in a sandbox).

    A measure that can run fewer repeats than its default says so with ``prunable = True``, its
    ``repeats`` attribute and a ``repeats`` keyword: the study then runs a search trial's first repeat
    alone and stops there when that repeat is already clearly worse than the best (pruning)."""

    def __call__(self, assignment: Mapping[str, Value]) -> Measurement: ...


_Item = tuple[Mapping[str, Value], tuple[int, ...] | None, tuple[int, ...] | None]  # assignment, point, asked


@dataclass(frozen=True)
class Batch:
    """How a measure takes several measurements at once (``Measure.side_by_side``): ``width`` repeats at a
    time, each in its own sandbox, and ``many`` measures (assignment, repeats) pairs together. The study
    then measures its design, the model's batches and the confirmation's arms side by side, for kinds
    whose probe waits on timers rather than on the CPU (tuner.probe.side_by_side)."""

    width: int
    repeats: int  # a measurement's default repeats
    many: Callable[[Sequence[tuple[Mapping[str, Value], int]]], list[Measurement]]

    @property
    def measurements(self) -> int:
        """Default measurements one batch holds."""
        return max(1, self.width // max(1, self.repeats))


def _prunable_repeats(measure: Measure) -> int:
    """How many repeats a full measurement of ``measure`` has, when it can be split (else 0)."""
    if not getattr(measure, "prunable", False):
        return 0
    repeats = getattr(measure, "repeats", 0)
    return repeats if isinstance(repeats, int) and repeats > 1 else 0


@dataclass(frozen=True)
class SearchConfig:
    """How to search. ``time_budget`` is in seconds; ``duration`` is seconds per repeat of a probe."""

    budget: int | None = None  # search trials; None: the kind's default (see default_budget)
    time_budget: float | None = None
    sampler: str = "skopt"
    seed: int = 0
    repeats: int | None = None  # per probe; None: the kind's default (see tuner.search.recommend)
    duration: float | None = None  # seconds per repeat; None: the kind's default
    objective: str | None = None
    knobs: tuple[str, ...] = ()
    no_knobs: tuple[str, ...] = ()
    journal: Path | None = None
    resume: bool = False
    confirm: int = 2  # leading candidates measured again before the winner is declared
    simplify: bool = True  # try the best candidate with fewer changed knobs (backward elimination)
    patience: int | None = None  # stop after this many search trials without a better score
    min_gain: float = 0.05  # a gain below 5% is not worth recommending
    max_repeats: int = 20  # confirmation: most samples per side while the answer is unclear
    prune: float | None = 1.0  # stop a search trial after one repeat when the best is > 2x better
    simplify_runs: int = 3  # at most this many measurements to simplify the best candidate
    name: str | None = None  # profile name (default: derived from the workload)

    def __post_init__(self) -> None:
        _check_bounds(self)
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}", hint=f"one of: {', '.join(SAMPLERS)}")
        if self.budget is not None and self.budget < 1:
            raise InputError(
                f"--budget {self.budget}: a search needs at least one trial",
                hint=f"the default is {budget_defaults()}",
            )
        if self.time_budget is not None and self.time_budget <= 0:
            raise InputError("--time must be positive", hint="e.g. --time 5m")
        if self.repeats is not None and self.repeats < 1:
            raise InputError(
                f"--repeats {self.repeats}: at least one repeat is needed", hint="e.g. --repeats 3"
            )
        if self.duration is not None and self.duration <= 0:
            raise InputError("--duration must be positive", hint="e.g. --duration 0.5s")
        if self.confirm < 0:
            raise InputError("confirm must not be negative", hint="0 turns the confirmation off")
        if self.prune is not None and self.prune <= 0:
            raise InputError("prune must be positive", hint="None turns pruning off")
        if self.simplify_runs < 0:
            raise InputError("simplify_runs must not be negative", hint="0 turns the simplification off")
        if self.patience is not None and self.patience < 1:
            raise InputError("patience must be at least 1", hint="None turns it off")
        if self.max_repeats < MIN_REPEATS:
            raise InputError(
                f"--max-repeats {self.max_repeats}: a claim needs at least {MIN_REPEATS} repeats per side",
                hint=f"give {MIN_REPEATS} or more",
            )
        if self.resume and self.journal is None:
            raise InputError(
                "--resume needs --journal FILE", hint="name the journal of the interrupted search"
            )


MAX_BUDGET = 1000  # trials; a search that needs more is looking at the wrong knobs
MAX_TIME = 7 * 86400.0  # seconds of --time
MAX_REPEATS = 100  # repeats per probe
MAX_DURATION = 600.0  # seconds per repeat


def budget_defaults() -> str:
    """The default trial budgets, for a user: "8; keepalive 15"."""
    own = [f"{k.value} {spec(k).budget}" for k in WorkloadKind if spec(k).budget]
    return "; ".join([str(DEFAULT_BUDGET), *own])


def _check_bounds(cfg: SearchConfig) -> None:
    """Upper bounds (and finiteness) of what a user can ask of a search, with the bound in the message."""
    for flag, value, hi in (("--budget", cfg.budget, MAX_BUDGET), ("--repeats", cfg.repeats, MAX_REPEATS)):
        if value is not None and value > hi:
            raise InputError(f"{flag} {value}: at most {hi}", hint=f"{flag} in [1, {hi}]")
    for flag, seconds, cap in (
        ("--time", cfg.time_budget, MAX_TIME),
        ("--duration", cfg.duration, MAX_DURATION),
    ):
        if seconds is not None and not (math.isfinite(seconds) and seconds <= cap):
            raise InputError(
                f"{flag} {seconds:g} s: at most {cap:g} s", hint=f"{flag} above 0 and at most {cap:g} s"
            )


class TrialRole(Enum):
    BASELINE = "baseline"
    SEARCH = "search"
    SIMPLIFY = "simplify"  # the best candidate with one changed knob put back to the baseline
    CONFIRM = "confirm"
    # side by side: the confirmation's first round for the baseline and the leaders of the moment, taken in
    # the search's last batch or the elimination's where it has sandboxes to spare; never used to rank, and
    # it becomes the confirmation's first round (role CONFIRM) only if it holds every leader the search
    # ends with
    AHEAD = "confirm-ahead"


class TrialState(Enum):
    COMPLETE = "complete"
    FAILED = "failed"  # measure raised, or returned a failed measurement
    INVALID = "invalid"  # the measurement ran but cannot be trusted (a sandbox or load bottleneck)
    REJECTED = (
        "rejected"  # a catalogue rule, or the probe could not judge it (Space.candidate); never measured
    )


@dataclass(frozen=True)
class Trial:
    number: int
    role: TrialRole
    state: TrialState
    assignment: Mapping[str, Value]
    point: tuple[int, ...] | None = None  # the point measured (after repair)
    asked: tuple[int, ...] | None = None  # the point the sampler proposed
    measurement: Measurement | None = None
    score: Score | None = None
    error: str | None = None
    started: float = 0.0  # unix time
    elapsed: float = 0.0  # seconds
    pruned: bool = False  # stopped after its first repeat: clearly worse than the best

    @property
    def key(self) -> str:
        return assignment_key(self.assignment)

    @property
    def usable(self) -> bool:
        return self.state is TrialState.COMPLETE and self.score is not None

    @property
    def searched(self) -> bool:
        """A measurement of the search (baseline, search, elimination) rather than of a confirmation: the
        ones that rank candidates and teach the sampler."""
        return self.role not in (TrialRole.CONFIRM, TrialRole.AHEAD)

    def to_record(self) -> dict[str, Any]:
        r: dict[str, Any] = {
            "number": self.number,
            "role": self.role.value,
            "state": self.state.value,
            "assignment": {k: json_value(v) for k, v in self.assignment.items()},
            "started": self.started,
            "elapsed": self.elapsed,
        }
        if self.point is not None:
            r["point"] = list(self.point)
        if self.asked is not None:
            r["asked"] = list(self.asked)
        if self.measurement is not None:
            r["measurement"] = self.measurement.to_dict()
        if self.score is not None:
            r["score"] = self.score.to_dict()
        if self.error is not None:
            r["error"] = self.error
        if self.pruned:
            r["pruned"] = True
        return r

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Trial:
        return cls(
            number=int(r["number"]),
            role=TrialRole(r["role"]),
            state=TrialState(r["state"]),
            assignment={
                k: tuple(v) if isinstance(v, list) else v for k, v in r.get("assignment", {}).items()
            },
            point=tuple(r["point"]) if r.get("point") is not None else None,
            asked=tuple(r["asked"]) if r.get("asked") is not None else None,
            measurement=Measurement.from_dict(r["measurement"]) if r.get("measurement") else None,
            score=Score.from_dict(r["score"]) if r.get("score") else None,
            error=r.get("error"),
            started=float(r.get("started", 0.0)),
            elapsed=float(r.get("elapsed", 0.0)),
            pruned=bool(r.get("pruned", False)),
        )


@dataclass(frozen=True)
class TrialEvent:
    """Progress of a study, sent when a measurement starts (``running``, ``trial`` None), after every
    trial, and once at the end (``phase`` "done")."""

    phase: str  # "baseline", "search", "simplify", "confirm-ahead", "confirm", "done"
    trial: Trial | None
    done: int  # search trials measured so far
    total: int  # the trial budget
    best: Score | None  # best score so far (search trials and baseline)
    baseline: Score | None
    elapsed: float  # seconds since the study started (including before a resume)
    message: str = ""
    phase_done: int = 0  # measurements of this phase so far (the running one included)
    phase_total: int = 0  # measurements this phase expects (an estimate for simplify and confirm)
    eta: float | None = None  # seconds until the verdict (estimate; None before one measurement)
    running: bool = False  # a measurement of this phase has just started


@dataclass(frozen=True)
class Verdict:
    significant: bool
    interval: GainInterval  # gain of the recommended setting over the baseline
    text: str


# buffer knobs and the tcp_info share (of the sender's busy time) that says the flow was held back by them
_LIMITED_BY: Mapping[str, str] = {
    "net.ipv4.tcp_rmem": "rwnd_limited_pct",
    "SO_RCVBUF": "rwnd_limited_pct",
    "net.ipv4.tcp_wmem": "sndbuf_limited_pct",
    "SO_SNDBUF": "sndbuf_limited_pct",
}
LIMITED_PCT = 10.0  # held back this share of the time or more: the buffer limits the flow


def _held_back(trials: Sequence[Trial]) -> set[str]:
    """Buffer knobs the flow was limited by in these trials (median over them, from tcp_info)."""
    held = set()
    for knob, metric in _LIMITED_BY.items():
        values = [
            t.measurement.metrics[metric].median
            for t in trials
            if t.measurement is not None and metric in t.measurement.metrics
        ]
        if values and statistics.median(values) >= LIMITED_PCT:
            held.add(knob)
    return held


@dataclass(frozen=True)
class StudyResult:
    baseline: Measurement  # the baseline's confirmation measurement (else all its measurements)
    best: Measurement  # the recommended setting's, measured side by side (baseline if none)
    assignment: Mapping[str, Value]  # the recommended changes ({} when the verdict is "keep the defaults")
    baseline_score: Score
    best_score: Score
    verdict: Verdict
    trials: tuple[Trial, ...]
    stop_reason: str
    leader: Mapping[str, Value] = field(default_factory=dict)  # the best candidate found, even if not chosen
    leader_interval: GainInterval | None = None
    elapsed: float = 0.0
    confirmed: bool = False  # the recommendation and the baseline were judged on confirmation runs

    @property
    def search_trials(self) -> int:
        return sum(
            1 for t in self.trials if t.role is TrialRole.SEARCH and t.state is not TrialState.REJECTED
        )

    @property
    def failed_trials(self) -> int:
        return sum(1 for t in self.trials if t.state in (TrialState.FAILED, TrialState.INVALID))


class Study:
    def __init__(
        self,
        space: Space,
        objective: Objective,
        sampler: Sampler,
        measure: Measure,
        *,
        config: SearchConfig,
        journal: SearchJournal | None = None,
        progress: Callable[[TrialEvent], None] | None = None,
    ) -> None:
        self.space = space
        self.objective = objective
        self.sampler = sampler
        self.measure = measure
        self.config = config
        self.budget = config.budget or default_budget(space.kind)  # search trials
        self.journal = journal
        self.progress = progress
        self.trials: list[Trial] = []
        self._by_key: dict[str, list[Trial]] = {}
        self._losses: list[float] = []
        self._start = time.monotonic()
        self._prior_elapsed = 0.0
        self._best: Score | None = None
        self._baseline: Trial | None = None
        self._simplified: str | None = None
        self._repeats = _prunable_repeats(measure)
        self._phase_runs: dict[str, int] = {}
        self._phase_total: dict[str, int] = {}
        self._max_leaders = config.confirm
        self._adopted_round: float | None = None  # when the round measured ahead that was adopted started
        self._batch: Batch | None = getattr(measure, "side_by_side", None)
        self._rejected = self._duplicates = 0  # the sampler's proposals in a row that were not measured

    # --- bookkeeping --------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self._prior_elapsed + time.monotonic() - self._start

    def _run_seconds(self) -> float | None:
        """Seconds a full measurement takes here: the median of the full (not pruned) ones so far."""
        xs = sorted(
            t.elapsed
            for t in self.trials
            if t.state is not TrialState.REJECTED and not t.pruned and t.elapsed > 0
        )
        return xs[len(xs) // 2] if xs else None

    def _confirm_runs(self, leaders: int | None = None) -> int:
        """Measurements the confirmation takes at least: the rounds that give every arm (the baseline and
        each leader) the minimum samples of a claim (one round for a quick look below the minimum)."""
        arms = 1 + (self._max_leaders if leaders is None else leaders)
        rounds = math.ceil(MIN_REPEATS / self._run_size()) if self._tops_up() else 1
        if self._batch is not None:
            rounds = 1  # side by side, each arm gets the repeats of a first look at once
        return arms * rounds

    def _simplify_runs_left(self) -> int:
        if not self.config.simplify or self.config.confirm == 0:
            return 0
        return max(0, self.config.simplify_runs - self._phase_runs.get("simplify", 0))

    def _fits(self, runs: int = 0) -> bool:
        """Whether ``runs`` more measurements and then the confirmation fit in the time budget (always,
        without one). Side by side they are two phases, which share no batch (the next search batch and
        the confirmation are two batches, not one)."""
        if self.config.time_budget is None:
            return True
        per = self._run_seconds() or 0.0
        walls = self._walls(runs) + self._confirm_walls()
        return self.elapsed() + walls * per <= self.config.time_budget

    def _walls(self, runs: int) -> int:
        """How many measurements' wall time ``runs`` measurements take: as many one at a time; side by
        side (see :class:`Batch`), a batch takes about as long as one of its measurements."""
        if self._batch is None or runs <= 0:
            return runs
        return math.ceil(runs / self._batch.measurements)

    def _confirm_walls(self, runs: int | None = None) -> int:
        """The wall time, in measurements, of ``runs`` confirmation measurements (default: the whole
        confirmation). Side by side, every arm gets the repeats of a first look at once, in as many waves
        of ``width`` repeats as they fill (4 arms of 5 repeats are two waves of 16)."""
        runs = self._confirm_runs() if runs is None else runs
        if self._batch is None or runs <= 0:
            return runs
        per = self._confirm_repeats()
        return math.ceil(runs * per / max(self._batch.width, per))

    def _eta(self, phase: str) -> float | None:
        per = self._run_seconds()
        if per is None:
            return None
        after = self._walls(self._simplify_runs_left()) + self._confirm_walls()
        left = {
            "baseline": self._walls(self.budget) + after,
            "search": self._walls(max(0, self.budget - self._search_done())) + after,
            "simplify": after,
            TrialRole.AHEAD.value: after,  # reported within the search's or the elimination's batch
            "confirm": self._confirm_walls(
                max(0, self._phase_total.get("confirm", 0) - self._phase_runs.get("confirm", 0))
            ),
        }.get(phase, 0)
        eta = left * per
        if self.config.time_budget is not None:
            eta = min(eta, max(0.0, self.config.time_budget - self.elapsed()))
        return eta

    def _search_done(self) -> int:
        return sum(
            1 for t in self.trials if t.role is TrialRole.SEARCH and t.state is not TrialState.REJECTED
        )

    def _penalty(self) -> float:
        finite = [x for x in self._losses if math.isfinite(x)]
        return (max(finite) if finite else 0.0) + 1.0

    def _told_loss(self, trial: Trial) -> float:
        """The loss the sampler learns from a trial: the score's, or for a measured but refused setting its
        own value made worse by :data:`INFEASIBLE_PENALTY` and by how far it is from the objective's limit
        (``log(1 + violation)``: one healthy connection killed per repeat doubles it again, forty make it
        41 times worse), so the model learns which changes go too far rather than that the region is bad;
        a trial with no score is infinite (told as worse than anything, see :meth:`_tell`)."""
        score = trial.score
        if not trial.usable or score is None:
            return math.inf
        if score.feasible or not math.isfinite(score.value):
            return score.loss
        own = dataclasses.replace(score, feasible=True).loss
        return own + INFEASIBLE_PENALTY + math.log1p(max(score.violation, 0.0))

    def _tell(self, points: Sequence[tuple[int, ...] | None], loss: float) -> None:
        if not math.isfinite(loss):
            loss = self._penalty()
        for p in dict.fromkeys(p for p in points if p is not None):
            self.sampler.tell(p, loss)

    def _record(self, trial: Trial, *, write: bool = True) -> None:
        self.trials.append(trial)
        if trial.state is not TrialState.REJECTED:
            self._by_key.setdefault(trial.key, []).append(trial)
        if trial.role is TrialRole.BASELINE and trial.usable:
            self._baseline = self._baseline or trial
        if trial.usable and trial.searched:
            assert trial.score is not None
            self._losses.append(trial.score.loss)
            if trial.score.feasible and (self._best is None or trial.score.better_than(self._best)):
                self._best = trial.score
        if write and self.journal is not None:
            self.journal.append(trial.to_record())

    def _emit(self, phase: str, trial: Trial | None, message: str = "", *, running: bool = False) -> None:
        if self.progress is None:
            return
        base = self._baseline.score if self._baseline else None
        total = self.budget if phase == "search" else self._phase_total.get(phase, 1)
        # search trials are counted from the study's record, so a resumed search goes on from its count
        count = self._search_done() + running if phase == "search" else self._phase_runs.get(phase, 0)
        self.progress(
            TrialEvent(
                phase,
                trial,
                self._search_done(),
                self.budget,
                self._best,
                base,
                self.elapsed(),
                message,
                count,
                total,
                self._eta(phase),
                running,
            )
        )

    # --- running trials -----------------------------------------------------------------------

    def _run(
        self,
        role: TrialRole,
        assignment: Mapping[str, Value],
        point: tuple[int, ...] | None,
        asked: tuple[int, ...] | None = None,
        *,
        prunable: bool = True,
    ) -> Trial:
        """One trial, measured alone; a search or elimination trial may be pruned (``prunable``), never a
        reference (the best measured again) or an arm of the confirmation."""
        started, t0 = time.time(), time.monotonic()
        log.info("trial.started", number=len(self.trials), role=role.value, assignment=dict(assignment))
        self._phase_runs[role.value] = self._phase_runs.get(role.value, 0) + 1
        self._emit(role.value, None, running=True)
        outcome: Measurement | BaseException
        pruned = False
        try:
            if prunable and role in (TrialRole.SEARCH, TrialRole.SIMPLIFY):
                outcome, pruned = self._measure_prunable(assignment)
            else:
                outcome = self.measure(dict(assignment))
        except Exception as exc:  # noqa: BLE001 - any failure of one trial is recorded; the search goes on
            outcome = exc
        return self._finish(role, assignment, point, asked, outcome, started, time.monotonic() - t0, pruned)

    def _run_many(
        self,
        role: TrialRole,
        items: Sequence[_Item],
        repeats: int | Sequence[int] | None = None,
        roles: Sequence[TrialRole] | None = None,
    ) -> list[Trial]:
        """Measure ``items`` (assignment, point, asked) side by side (see :class:`Batch`) and record one
        trial each, in order; ``roles`` gives each item its own role (the baseline in the first batch).
        Each trial's elapsed time is the batch's: that is how long each of them took. An unusable
        baseline is measured again, alone, before the batch's candidates are scored."""
        assert self._batch is not None
        roles = list(roles or [role] * len(items))
        started, t0 = time.time(), time.monotonic()
        for i, (r, (assignment, _, _)) in enumerate(zip(roles, items)):
            log.info("trial.started", number=len(self.trials) + i, role=r.value, assignment=dict(assignment))
            self._phase_runs[r.value] = self._phase_runs.get(r.value, 0) + 1
        self._emit(role.value, None, f"measuring {len(items)} side by side", running=True)
        if repeats is None or isinstance(repeats, int):
            counts = [repeats or self._batch.repeats] * len(items)
        else:
            counts = list(repeats)
        try:
            ms: list[Measurement | BaseException] = list(
                self._batch.many([(dict(a), n) for (a, _, _), n in zip(items, counts)])
            )
        except Exception as exc:  # noqa: BLE001 - the batch failed: each of its trials failed
            ms = [exc] * len(items)
        elapsed = time.monotonic() - t0
        out = []
        failed: SearchError | None = None
        for r, (assignment, point, asked), m in zip(roles, items, ms):
            out.append(self._finish(r, assignment, point, asked, m, started, elapsed))
            if r is TrialRole.BASELINE and not out[-1].usable:
                # the batch's candidates are judged against a usable baseline (the memory and udp
                # objectives hold them to it): measured alone now, before they are scored
                try:
                    self._measure_baseline()
                except SearchError as exc:
                    failed = exc  # the batch's measurements are still recorded (and journaled)
        if failed is not None:
            raise failed
        return out

    def _finish(
        self,
        role: TrialRole,
        assignment: Mapping[str, Value],
        point: tuple[int, ...] | None,
        asked: tuple[int, ...] | None,
        outcome: Measurement | BaseException,
        started: float,
        elapsed: float,
        pruned: bool = False,
    ) -> Trial:
        """Judge one measurement (or the exception that took its place), record and announce its trial."""
        number = len(self.trials)
        measurement: Measurement | None = None
        score: Score | None = None
        error: str | None = None
        if isinstance(outcome, BaseException):
            state, error = TrialState.FAILED, f"{type(outcome).__name__}: {outcome}"
        else:
            measurement = outcome
            if measurement.failed:
                state, error = TrialState.FAILED, measurement.error or "the probe reported a failure"
            elif not measurement.valid:
                state, error = TrialState.INVALID, measurement.invalid_reason or "the measurement is invalid"
            elif measurement.held_back and not assignment:
                # a pessimistic bound is fair for a candidate, but a baseline held back flatters them all
                state, error = TrialState.INVALID, f"the baseline was held back: {measurement.held_back}"
            else:
                state = TrialState.COMPLETE
                base_m = self._baseline.measurement if self._baseline else None
                score = self.objective.score(measurement, base_m if role is not TrialRole.BASELINE else None)
        trial = Trial(
            number,
            role,
            state,
            dict(assignment),
            point,
            asked,
            measurement,
            score,
            error,
            started,
            elapsed,
            pruned,
        )
        if state is TrialState.COMPLETE:
            log.info(
                "trial.finished",
                number=number,
                role=role.value,
                score=score.value if score else None,
                elapsed=round(trial.elapsed, 3),
                pruned=pruned,
            )
        else:
            log.warning("trial.failed", number=number, role=role.value, state=state.value, error=error)
        self._record(trial)
        self._emit(role.value, trial)
        return trial

    def _measure_prunable(self, assignment: Mapping[str, Value]) -> tuple[Measurement, bool]:
        """A search or elimination trial's measurement, and whether it was pruned: with a prunable measure
        and a best score to compare with, the first repeat runs alone; when it is worse than the best by
        more than ``prune`` (2x by default: far beyond the noise of one repeat) the trial stops there (a
        reduction that bad is no free one: a burst listener's backlog put back costs 13 s in full)."""
        best, margin = self._best, self.config.prune
        if not self._repeats or best is None or margin is None:
            return self.measure(dict(assignment)), False
        call: Any = self.measure  # a prunable measure takes ``repeats`` (see Measure)
        first: Measurement = call(dict(assignment), repeats=1)
        if first.failed or not first.valid:
            return first, False
        base_m = self._baseline.measurement if self._baseline else None
        score = self.objective.score(first, base_m)
        if score.feasible and gain(best.value, score.value, best.direction) < 1.0 / (1.0 + margin):
            log.info("trial.pruned", score=score.value, best=best.value, margin=margin)
            return first, True
        rest: Measurement = call(dict(assignment), repeats=self._repeats - 1)
        if rest.failed or not rest.valid:
            return rest, False
        return pool_measurements([first, rest]), False

    def _replay(self, records: Sequence[Mapping[str, Any]]) -> None:
        for r in records:
            trial = Trial.from_record(r)
            if trial.number != len(self.trials):
                raise SearchError(
                    f"the journal's trials are out of order at trial {trial.number}",
                    hint="start a new search with another --journal",
                )
            self._record(trial, write=False)
            self._prior_elapsed += trial.elapsed
            if not trial.searched:
                continue
            self._tell([trial.asked, trial.point], self._told_loss(trial))
        if records:
            log.info("study.resumed", trials=len(records), search_trials=self._search_done())

    # --- the phases ---------------------------------------------------------------------------

    def run(self) -> StudyResult:
        self._start = time.monotonic()
        if self.journal is not None:
            self._replay(self.journal.records)
        if self._batch is None:
            self._measure_baseline()
        stop_reason = self._search()  # side by side, the baseline is measured with the first batch
        log.info("study.search_stopped", reason=stop_reason, trials=self._search_done())
        # runs done already (side by side, in the search's last batch) and runs left
        self._phase_total["simplify"] = self._phase_runs.get("simplify", 0) + self._simplify_runs_left()
        self._simplify()
        if not self._adopt_ahead():
            # --time bounds the whole run: confirm as many leaders as the time left allows
            while self._max_leaders > 0 and not self._fits():
                self._max_leaders -= 1
            if not self._adopt_ahead():  # fewer leaders: a round measured ahead may hold them now
                self._phase_total["confirm"] = self._confirm_runs(len(self._leaders()))
        self._confirm()
        result = self._decide(stop_reason)
        self._emit("done", None, result.verdict.text)
        return result

    def _measure_baseline(self) -> None:
        if self._baseline is not None:
            return
        point = self.space.baseline_point()
        for _ in range(2):  # one retry: a baseline is needed to judge anything
            trial = self._run(TrialRole.BASELINE, {}, point, point)
            if trial.usable:
                assert trial.score is not None
                self._tell([point], trial.score.loss)
                return
        raise SearchError(
            f"the baseline measurement failed twice: {trial.error}",
            hint="`tuner probe` with the same workload and path shows one measurement in full; "
            "`tuner doctor` checks what this machine supports",
        )

    def _vet(self, asked: tuple[int, ...]) -> Candidate | str | None:
        """A point the sampler asked for, as a candidate to measure; ``None`` when it is not one (the
        catalogue rejects it, or it is a setting already measured: the sampler hears that at once), or a
        stop reason when the sampler keeps proposing such points."""
        try:
            cand = self.space.candidate(asked)
        except KnobError as exc:
            log.info("candidate.rejected", point=list(asked), knob=exc.knob, reason=exc.message)
            proposed = {k: v for k, v in self.space.values(asked).items() if v is not None}
            trial = Trial(
                len(self.trials),
                TrialRole.SEARCH,
                TrialState.REJECTED,
                proposed,
                None,
                asked,
                error=exc.message,
                started=time.time(),
            )
            self._record(trial)
            self._tell([asked], math.inf)
            self._rejected += 1
            if self._rejected >= _MAX_REJECTED_IN_ROW:
                return "the sampler proposed only settings the catalogue rejects or the probe cannot judge"
            return None
        self._rejected = 0
        known = [t for t in self._by_key.get(cand.key, ()) if t.searched]
        if known:
            self._tell([asked, cand.point], self._told_loss(known[-1]))
            self._duplicates += 1
            if self._duplicates >= _MAX_DUPLICATES_IN_ROW:
                return "converged: the sampler keeps proposing settings already measured"
            return None
        self._duplicates = 0
        return cand

    def _stop_reason(self, since_best: int) -> str | None:
        cfg = self.config
        if self._search_done() >= self.budget:
            return "trial budget"
        # the time budget holds the confirmation too: stop while it fits (the simplification gets
        # what is left after the search, and is skipped when nothing is)
        if cfg.time_budget is not None and not self._fits(1):
            return "time budget"
        if cfg.patience is not None and since_best >= cfg.patience:
            return f"converged: no better score in {cfg.patience} trials"
        return None

    def _search(self) -> str:
        if self._batch is not None:
            return self._search_side_by_side()
        since_best = 0
        best = self._best
        while True:
            stop = self._stop_reason(since_best)
            if stop is not None:
                return stop
            asked = self.sampler.ask()
            if asked is None:
                return "every point of the space was measured"
            cand = self._vet(asked)
            if isinstance(cand, str):
                return cand
            if cand is None:
                continue
            trial = self._run(TrialRole.SEARCH, cand.assignment, cand.point, asked)
            if trial.state is TrialState.INVALID and self._search_done() < self.budget and self._fits(1):
                # an invalid run (the sandbox or the load generator could not keep up) says nothing
                # about the setting; told as a penalty it would teach the sampler that, say, bbr is bad
                # and the design's one try of it would be lost: measure it once more
                log.info("trial.retry_invalid", number=trial.number, reason=trial.error)
                trial = self._run(TrialRole.SEARCH, cand.assignment, cand.point, asked)
            self._tell([asked, cand.point], self._told_loss(trial))
            if self._best is not best:
                best, since_best = self._best, 0
            else:
                since_best += 1

    def _search_side_by_side(self) -> str:
        """The search in batches measured side by side (see :class:`Batch`): the design first, with the
        baseline when it is still to be measured, then the model's batches. A trial the path spoiled
        (invalid) is measured again in the next batch, once."""
        assert self._batch is not None
        since_best = 0
        best = self._best
        retry: list[tuple[Candidate, tuple[int, ...]]] = []
        while True:
            stop = self._stop_reason(since_best)
            if stop is not None and self._baseline is not None:
                for cand, asked in retry:  # no room to measure them again: the sampler hears of them
                    self._tell([asked, cand.point], math.inf)
                return stop
            capacity = self._batch.measurements - (self._baseline is None)
            room = min(capacity, self.budget - self._search_done())
            batch: list[tuple[Candidate, tuple[int, ...]]] = retry[:room]
            retry = retry[room:]
            stop = None
            # a point the sampler gives that is rejected or already measured leaves its place in the batch
            # to another ask (a design holds neither, see initial_design: the model's points fill them)
            asks: list[tuple[int, ...]] = []
            want = asked_for = room - len(batch)
            while want > 0 and stop is None:
                more = [p for p in ask_batch(self.sampler, asked_for) if p not in asks][:want]
                if not more:
                    break  # the sampler, told nothing new, gives the same points again
                asks += more
                asked_for = room  # untold, the points taken come back first: ask past them
                before = len(batch)
                for asked in more:
                    vetted = self._vet(asked)
                    if isinstance(vetted, str):
                        stop = vetted
                        break
                    if vetted is not None and all(c.key != vetted.key for c, _ in batch):
                        batch.append((vetted, asked))
                want = min(room - len(batch), len(more) - (len(batch) - before))
            items: list[_Item] = [(c.assignment, c.point, a) for c, a in batch]
            roles = [TrialRole.SEARCH] * len(items)
            if self._baseline is None:
                point = self.space.baseline_point()
                items.insert(0, ({}, point, point))
                roles.insert(0, TrialRole.BASELINE)
            ahead_key: str | None = None
            simplify_ahead: list[_Item] = []
            searched = len(items)
            counts = [self._batch.repeats] * searched
            if batch and self._search_done() + len(batch) >= self.budget:  # the search's last
                ahead_key, simplify_ahead = self._simplify_ahead(
                    capacity - len(batch), {c.key for c, _ in batch}
                )
                self._phase_total["simplify"] = self.config.simplify_runs  # "simplify 2/3", not "2/1"
                items += simplify_ahead
                roles += [TrialRole.SIMPLIFY] * len(simplify_ahead)
                counts += [self._batch.repeats] * len(simplify_ahead)
                self._add_confirm_ahead(items, roles, counts)
            if not items:
                if stop is None and asks:
                    continue  # every point asked was refused or known: ask again (_vet stops a sampler
                    # that keeps doing so)
                return stop or "every point of the space was measured"
            trials = self._run_many(TrialRole.SEARCH, items, repeats=counts, roles=roles)
            # the elimination's runs are judged after the search, the confirmation's after the elimination
            trials = trials[:searched]
            if roles[0] is TrialRole.BASELINE:
                base, trials = trials[0], trials[1:]
                if base.usable and base.score is not None:
                    self._tell([base.point], base.score.loss)  # (else _run_many measured it again, alone)
            for (cand, asked), trial in zip(batch, trials):
                runs = sum(1 for t in self._by_key.get(cand.key, ()) if t.role is TrialRole.SEARCH)
                if trial.state is TrialState.INVALID and runs == 1:
                    retry.append((cand, asked))  # see the sequential search: an invalid run says nothing
                    continue
                self._tell([asked, cand.point], self._told_loss(trial))
            ranked = self._ranked()
            if (
                simplify_ahead
                and ranked
                and ranked[0] != ahead_key
                and ranked[0] in {c.key for c, _ in batch}
            ):
                # the batch's search found a new best: its own elimination is still to come, with its
                # full runs (a reduction of the old best that leads is an elimination step taken)
                self._phase_runs["simplify"] -= len(simplify_ahead)
            if stop is not None:
                for cand, asked in retry:
                    self._tell([asked, cand.point], math.inf)
                return stop
            if self._best is not best:
                best, since_best = self._best, 0
            else:
                since_best += len(trials)

    def _arms(self) -> dict[str, list[Trial]]:
        """Usable trials per assignment. Where an assignment was confirmed, only its confirmation
        trials count: they were measured side by side, after the choice, so the winner's luck in the
        search (the best of many noisy draws looks better than it is) does not inflate its gain."""
        out = {}
        for k, ts in self._by_key.items():
            usable = [t for t in ts if t.usable and t.role is not TrialRole.AHEAD]  # unless adopted
            confirmed = [t for t in usable if t.role is TrialRole.CONFIRM]
            out[k] = confirmed or usable
        return out

    def _ranked(self) -> list[str]:
        """Keys of the distinct feasible candidates measured in the search (not the baseline), best first."""
        base_key = assignment_key({})
        scored = []
        for key, trials in self._by_key.items():
            ts = [t for t in trials if t.role in (TrialRole.SEARCH, TrialRole.SIMPLIFY) and t.usable]
            if key == base_key or not ts:
                continue
            pooled = Score.pooled([t.score for t in ts if t.score is not None])
            if pooled.feasible:
                scored.append((pooled.loss, key))
        scored.sort()
        return [k for _, k in scored]

    def _promising(self, exclude: Collection[str] = ()) -> list[str]:
        """The ranked candidates worth a confirmation: those whose search runs leave room for the gain a
        recommendation needs (the upper end of their interval against the baseline's search runs reaches
        ``1 + min_gain``) and, after the first, within the pruning margin of the best (2x by default): a
        confirmation cannot turn a candidate the search already shows short of either into the choice,
        and measuring it side by side would only spend time (a search that found nothing moved on a
        200 ms path spent 11 of its 20 runs confirming that). A candidate its confirmation refused
        (:meth:`_refused`) is none, nor one in ``exclude``: the next one takes its place."""
        base = [
            t.score for t in self._by_key.get(assignment_key({}), ()) if t.usable and t.score and t.searched
        ]
        if not base:
            return []
        base_score = Score.pooled(base)
        margin = 1.0 + (self.config.prune if self.config.prune is not None else 1.0)
        out: list[str] = []
        skip = self._refused() | set(exclude)
        for key in self._ranked():
            if key in skip:
                continue
            score = self._search_score(key)
            iv = gain_interval(
                base_score.samples,
                score.samples,
                score.direction,
                seed=self.config.seed,
                confidence=self._confidence(),
            )
            if iv.hi < 1.0 + self.config.min_gain:
                continue
            if out and gain(self._search_score(out[0]).value, score.value, score.direction) < 1.0 / margin:
                continue
            out.append(key)
        return out

    def _leaders(self) -> list[str]:
        """The candidates to confirm: the simplified best (if any), then the best promising ones (see
        :meth:`_promising`), best first."""
        ranked = self._promising()
        first = [self._simplified] if self._simplified in ranked else []
        leaders = list(dict.fromkeys(first + ranked[: self.config.confirm]))
        # at most ``confirm`` (what _confirm_runs counts), fewer when the time budget cannot hold the
        # confirmation of them all (see run)
        return leaders[: self._max_leaders]

    def _refused(self) -> set[str]:
        """Candidates a confirmation run refused (it killed a live connection, broke a bound): their search
        runs passed by luck, and no verdict may choose them."""
        return {
            t.key
            for t in self.trials
            if t.role is TrialRole.CONFIRM and t.usable and t.score is not None and not t.score.feasible
        }

    def _search_score(self, key: str) -> Score:
        return Score.pooled(
            [t.score for t in self._by_key[key] if t.usable and t.score is not None and t.searched]
        )

    def _simplifiable(self) -> Trial | None:
        """The best candidate's first trial, when the elimination has work on it: the confirmation would
        judge it (:meth:`_promising`; else no reduction of it is worth a run either) and it changes more
        than one knob (without its only change it is the baseline, which the confirmation judges)."""
        ranked = self._ranked()
        if not ranked or ranked[0] not in self._promising():
            return None
        current = self._by_key[ranked[0]][0]
        base_point = self.space.baseline_point()
        if current.point is None or sum(a != b for a, b in zip(current.point, base_point)) <= 1:
            return None
        return current

    def _simplify(self) -> None:
        """Backward elimination from the best candidate: put its changed knobs back to their baseline
        level one at a time, the biggest cost saving first, and keep each reduction that performs like
        the best within noise (or within ``min_gain``). The profile then holds only knobs that matter."""
        if not self.config.simplify or self.config.confirm == 0:
            return
        current = self._simplifiable()
        if current is None:
            return
        best_key = current.key
        base_point = self.space.baseline_point()
        # The best of many noisy trials looks better than it is (it was chosen for its luck): measure it
        # again and judge the reductions against that fresh run only.
        reference = [t for t in self._by_key[best_key] if t.role is TrialRole.SIMPLIFY and t.usable]
        if not reference and self._batch is None:  # side by side, it is measured with the reductions
            if not self._simplify_runs_left() or not self._fits(1):
                return
            again = self._run(TrialRole.SIMPLIFY, current.assignment, current.point, prunable=False)
            reference = [again] if again.usable else []
        best = (
            Score.pooled([t.score for t in reference if t.score is not None])
            if reference
            else self._search_score(best_key)
        )
        direction = best.direction
        held = _held_back(reference or [t for t in self._by_key[best_key] if t.searched])
        while current.point is not None:
            changed = [i for i, (a, b) in enumerate(zip(current.point, base_point)) if a != b]
            if len(changed) <= 1:
                break  # without its last change it is the baseline, which the confirmation judges
            reductions = self._reductions(current, base_point, held)
            if self._batch is not None:
                fresh_best = self._simplify_side_by_side(current, reductions, best, not reference)
                if fresh_best is not None and fresh_best.usable and fresh_best.score is not None:
                    reference, best = [fresh_best], fresh_best.score
                    held = _held_back(reference)
            accepted = None
            for cand in reductions:
                ts = [t for t in self._by_key.get(cand.key, ()) if t.usable]
                if any(t.role is TrialRole.SEARCH for t in ts):
                    prior = self._search_score(cand.key)
                    if gain_interval(prior.samples, best.samples, direction, seed=self.config.seed).lo > 2.0:
                        continue  # clearly worse already in the search: not worth another run
                # judged on a run taken right after the best's fresh run: the machine's load drifts
                fresh = [t for t in ts if t.role is TrialRole.SIMPLIFY]
                if not fresh:
                    if not self._simplify_runs_left() or not self._fits(1):
                        continue  # no run left for it; one measured already (side by side) is still judged
                    trial = self._run(TrialRole.SIMPLIFY, cand.assignment, cand.point)
                    if not trial.usable or trial.pruned:
                        continue
                    fresh = [trial]
                lowered = {
                    self.space.dimensions[j].knob
                    for j in changed
                    if cand.point is not None and cand.point[j] != current.point[j]
                }
                if lowered & set(_held_back(fresh)):
                    continue  # smaller, a buffer holds the flow back (tcp_info): not a free reduction
                score = Score.pooled([t.score for t in fresh if t.score is not None])
                worse = gain_interval(score.samples, best.samples, direction, seed=self.config.seed)
                if worse.lo <= 1.0 or worse.gain < 1.0 + self.config.min_gain:
                    accepted = fresh[0]
                    break
            if accepted is None:
                break
            log.info(
                "study.simplified",
                removed=sorted(set(current.assignment) - set(accepted.assignment)),
                assignment=dict(accepted.assignment),
            )
            current = accepted
        if current.key != best_key:
            self._simplified = current.key

    def _reductions(
        self, current: Trial, base_point: tuple[int, ...], held: Collection[str]
    ) -> list[Candidate]:
        """The elimination's next step from ``current``: each changed knob put back to its baseline level,
        the biggest cost saving first (never a buffer that held the flow back at the best), and ahead of
        them the one run that keeps only the change the search credits most, when that removes more."""
        assert current.point is not None
        changed = [i for i, (a, b) in enumerate(zip(current.point, base_point)) if a != b]
        options: list[tuple[float, Candidate]] = []
        for i in changed:
            dim = self.space.dimensions[i]
            if dim.knob in held and dim.ordered and base_point[i] < current.point[i]:
                continue  # the flow was held back by this buffer at the best: never lower it
            reduced = list(current.point)
            reduced[i] = base_point[i]
            try:
                cand = self.space.candidate(tuple(reduced))
            except KnobError:
                continue
            # a repair (e.g. a cap raised again for a backlog) can undo the reduction: only a
            # candidate with fewer changes is a reduction, or the elimination would never end
            if (
                cand.key == current.key
                or cand.point is None
                or sum(a != b for a, b in zip(cand.point, base_point)) >= len(changed)
            ):
                continue
            options.append((self.space.cost(cand.assignment), cand))
        options.sort(key=lambda o: o[0])
        jump = self._main_knob_only(current.point, changed, base_point)
        if (
            jump is not None
            and len(changed) > 2
            and jump.key != current.key
            and jump.point is not None
            and sum(a != b for a, b in zip(jump.point, base_point)) < len(changed) - 1
            and all(c.key != jump.key for _, c in options)
            and not any(
                self.space.dimensions[j].knob in held and jump.point[j] != current.point[j] for j in changed
            )
        ):
            options.insert(0, (0.0, jump))  # one run may remove every change but the one that matters
        return [c for _, c in options]

    def _simplify_side_by_side(
        self, current: Trial, options: Sequence[Candidate], best: Score, reference: bool
    ) -> Trial | None:
        """Side by side (see :class:`Batch`): the best's fresh run (when ``reference``) and this step's
        reductions that have no fresh run yet, at once, as many as the simplification's runs left allow;
        returns the best's fresh run when it was measured. The elimination then judges each reduction on
        its run as before."""
        if not self._fits(1):
            return None
        left = self._simplify_runs_left()
        items = self._simplify_items(current, options, best, reference, left)
        if not items:
            return None
        assert self._batch is not None
        roles = [TrialRole.SIMPLIFY] * len(items)
        counts = [self._batch.repeats] * len(items)
        if not self._ahead_round():  # no round measured ahead holds the leaders of the moment yet
            self._add_confirm_ahead(items, roles, counts)
        trials = self._run_many(TrialRole.SIMPLIFY, items, repeats=counts, roles=roles)
        return trials[0] if reference and left else None

    def _simplify_items(
        self, current: Trial, options: Sequence[Candidate], best: Score, reference: bool, left: int
    ) -> list[_Item]:
        """At most ``left`` runs of one elimination step: the best's fresh run (when ``reference``), then
        the reductions not yet measured fresh and not clearly worse in the search already."""
        items: list[_Item] = []
        if reference and left:
            items.append((current.assignment, current.point, None))
        for cand in options:
            if len(items) >= left:
                break
            ts = [t for t in self._by_key.get(cand.key, ()) if t.usable]
            if any(t.role is TrialRole.SIMPLIFY for t in ts):
                continue
            if any(t.role is TrialRole.SEARCH for t in ts):
                prior = self._search_score(cand.key)
                if gain_interval(prior.samples, best.samples, best.direction, seed=self.config.seed).lo > 2.0:
                    continue  # clearly worse already in the search (as in the elimination)
            items.append((cand.assignment, cand.point, None))
        return items

    def _simplify_ahead(self, room: int, batch: Collection[str]) -> tuple[str | None, list[_Item]]:
        """Side by side, the search's last batch often has sandboxes to spare: the best so far rides in it
        with its first reductions (the elimination's first step, as :meth:`_simplify` would measure it
        after the search), so that the elimination finds them measured instead of taking a batch of its
        own (a keepalive batch is ~20 s). Returns the best's key and the items (none without room for the
        best and one reduction, or a best the confirmation would not judge); a reduction that is one of
        the ``batch``'s own candidates (keys) is measured there already."""
        left = min(room, self._simplify_runs_left())
        current = self._simplifiable() if left >= 2 else None
        if current is None:
            return None, []
        best_key = current.key
        if any(t.role is TrialRole.SIMPLIFY for t in self._by_key[best_key]):
            return None, []
        base_point = self.space.baseline_point()
        searched = [t for t in self._by_key[best_key] if t.searched]
        reductions = self._reductions(current, base_point, _held_back(searched))
        reductions = [c for c in reductions if c.key not in batch]
        items = self._simplify_items(current, reductions, self._search_score(best_key), True, left)
        return (best_key, items) if len(items) > 1 else (None, [])

    # --- confirmation: side by side, until the samples can carry a claim ----------------------

    def _confirm_repeats(self) -> int:
        """Repeats of an arm's first confirmation run side by side: a claim's minimum at once."""
        return max(MIN_REPEATS, self._run_size()) if self._tops_up() else self._run_size()

    def _round_size(self) -> int:
        """Samples a confirmation round adds per arm: one measurement's repeats, one after another; side by
        side, a claim's minimum at once (the first look at 5 vs 5, then 10, 15, 20: four looks, so that
        the first can pass at all; with top-ups of 2 the 8 looks' level needs p < 0.00625, beyond what
        5 vs 5 repeats can give)."""
        return self._confirm_repeats() if self._batch is not None else self._run_size()

    def _add_confirm_ahead(self, items: list[_Item], roles: list[TrialRole], counts: list[int]) -> None:
        """Side by side, the confirmation's first round rides in a batch of the search's end (its last
        batch, or the elimination's) in the repeats that batch leaves of ``width`` (a keepalive batch is
        ~20 s; spare sandboxes cost little): the baseline and every leader of the moment (see
        :meth:`_leaders`), a claim's repeats each, appended to ``items``, ``roles`` and ``counts``; nothing
        when they do not all fit. It counts only if the search ends with those leaders
        (:meth:`_adopt_ahead`). Where room is left, the next promising candidate rides too: it takes a
        refused leader's place without a batch of its own (:meth:`_adopt_reserve`)."""
        if self._batch is None or self.config.confirm == 0 or not self._tops_up():
            return
        leaders = self._leaders()
        per = self._confirm_repeats()
        if not leaders or self._batch.width - sum(counts) < per * (1 + len(leaders)):
            return
        keys = [assignment_key({}), *leaders]
        reserve = next(iter(self._promising(exclude=leaders)), None)
        if reserve is not None and self._batch.width - sum(counts) >= per * (2 + len(leaders)):
            keys.append(reserve)  # the leaders' replacement, should the confirmation refuse one
        arms = [self._by_key[k][0] for k in keys]
        items += [(t.assignment, t.point, None) for t in arms]
        roles += [TrialRole.AHEAD] * len(arms)
        counts += [per] * len(arms)
        self._phase_total[TrialRole.AHEAD.value] = self._phase_total.get(TrialRole.AHEAD.value, 0) + len(arms)

    def _ahead_round(self) -> list[Trial]:
        """The latest round measured ahead (one batch's :attr:`TrialRole.AHEAD` trials) that holds the
        baseline and every leader of the moment, all usable; [] when there is none."""
        keys = {assignment_key({}), *self._leaders()}
        rounds: dict[float, list[Trial]] = {}  # per batch (its trials share its start), in trial order
        for t in self.trials:
            if t.role is TrialRole.AHEAD:
                rounds.setdefault(t.started, []).append(t)
        for trials in sorted(rounds.values(), key=lambda ts: ts[0].number, reverse=True):
            usable = [t for t in trials if t.usable and t.key in keys]
            if len(keys) > 1 and {t.key for t in usable} == keys:
                return usable
        return []

    def _adopt_ahead(self) -> bool:
        """Make a round measured ahead (:meth:`_add_confirm_ahead`, in the search's last batch or the
        elimination's) the confirmation's first round, when it holds the baseline and every leader the
        search ended with, all usable (:meth:`_ahead_round`). Those arms were then measured side by side,
        and no choice looked at them (they never rank a candidate), so the winner's luck in the search
        stays out of the verdict as with a round measured after it. Otherwise the confirmation measures
        its own round and the rounds measured ahead are left out of every judgement."""
        if not any(t.role is TrialRole.AHEAD for t in self.trials):
            return False
        round_ = self._ahead_round()
        if not round_:
            log.info("study.ahead_unused", leaders=len(self._leaders()))
            return False
        adopted = {id(t): dataclasses.replace(t, role=TrialRole.CONFIRM) for t in round_}
        keys = {t.key for t in round_}
        self.trials = [adopted.get(id(t), t) for t in self.trials]
        for key in keys:
            self._by_key[key] = [adopted.get(id(t), t) for t in self._by_key[key]]
        self._phase_runs["confirm"] = self._phase_total["confirm"] = len(adopted)
        self._adopted_round = round_[0].started
        log.info("study.ahead_adopted", leaders=len(keys) - 1, runs=len(adopted))
        return True

    def _adopt_reserve(self) -> str | None:
        """When the confirmation refused every leader, the promising candidate that rode as the reserve in
        the adopted round (:meth:`_add_confirm_ahead`) takes that run as its confirmation's first: it was
        measured side by side with the baseline's, and nothing chose it by its values (the refusal looked
        at other candidates' runs). Its key, if there was one."""
        if self._adopted_round is None:
            return None
        promising = set(self._promising())
        for t in self.trials:
            if (
                t.role is TrialRole.AHEAD
                and t.usable
                and t.started == self._adopted_round
                and t.key in promising
                and not any(x.role is TrialRole.CONFIRM for x in self._by_key[t.key])
            ):
                adopted = dataclasses.replace(t, role=TrialRole.CONFIRM)
                self.trials = [adopted if x is t else x for x in self.trials]
                self._by_key[t.key] = [adopted if x is t else x for x in self._by_key[t.key]]
                log.info("study.reserve_adopted", assignment=t.key)
                return t.key
        return None

    def _confirmed_keys(self) -> set[str]:
        """Candidates (not the baseline) with a usable confirmation run."""
        base = assignment_key({})
        return {t.key for t in self.trials if t.role is TrialRole.CONFIRM and t.usable and t.key != base}

    def _tops_up(self) -> bool:
        """Whether the confirmation may add runs: not when the user fixed --repeats below the minimum
        (a quick look, which then claims nothing)."""
        return self.config.repeats is None or self.config.repeats >= MIN_REPEATS

    def _run_size(self) -> int:
        """Samples one measurement gives (its repeats), from the baseline's runs."""
        base = [
            t
            for t in self._by_key.get(assignment_key({}), ())
            if t.usable and t.score is not None and t.searched  # not a confirmation's claim-sized runs
        ]
        return max(1, max((len(t.score.samples) for t in base if t.score is not None), default=1))

    def _looks(self) -> int:
        """How many times the confirmation may test the same comparison (first look + adaptive ones)."""
        if not self._tops_up():
            return 1
        size = self._round_size()
        first = math.ceil(MIN_REPEATS / size)
        most = max(first, math.ceil(self.config.max_repeats / size))
        return most - first + 1

    def _confidence(self) -> float:
        """The level each test of the decision uses: 95% shared among the confirmation's looks."""
        return looks_confidence(self._looks(), CONFIDENCE)

    def _confirm_samples(self, key: str) -> int:
        return sum(
            len(t.score.samples)
            for t in self._by_key.get(key, ())
            if t.role is TrialRole.CONFIRM and t.usable and t.score is not None
        )

    def _confirm_round(self, keys: Sequence[str]) -> bool:
        """One run of each key, interleaved (a failed or invalid run is tried once more). False when a
        key got no usable run in this round (the machine is failing: stop adding)."""
        if self._batch is not None:
            return self._confirm_side_by_side(keys)
        ok = True
        for key in keys:
            ref = self._by_key[key][0]
            for _ in range(2):
                if self.config.time_budget is not None and self.elapsed() >= self.config.time_budget * 1.5:
                    return False
                if self._run(TrialRole.CONFIRM, ref.assignment, ref.point).usable:
                    break
            else:
                ok = False
        return ok

    def _confirm_side_by_side(self, keys: Sequence[str]) -> bool:
        """One round of every key at once (see :class:`Batch`), each with the repeats it lacks for a first
        look (``MIN_REPEATS``), or a claim's repeats again after that (:meth:`_round_size`); a key whose
        run was not usable is measured again once, with the others that failed."""
        want = {
            k: max(MIN_REPEATS - self._confirm_samples(k), self._round_size()) if self._tops_up() else 0
            for k in keys
        }
        todo = list(keys)
        for _ in range(2):
            if self.config.time_budget is not None and self.elapsed() >= self.config.time_budget * 1.5:
                return False
            refs = [self._by_key[k][0] for k in todo]
            trials = self._run_many(
                TrialRole.CONFIRM,
                [(r.assignment, r.point, None) for r in refs],
                repeats=[want[k] or self._run_size() for k in todo],
            )
            failed = [k for k, t in zip(todo, trials) if not t.usable]
            if not failed:
                return True
            todo = failed
        return False

    def _unclear(self, keys: Sequence[str]) -> bool:
        """The best confirmed leader's comparison with the baseline straddles the threshold: it looks
        better than the baseline and its interval reaches past 1 + min_gain, but the test does not yet
        reject "no difference"."""
        arms = self._arms()
        base_key = assignment_key({})
        base = Score.pooled([t.score for t in arms.get(base_key, []) if t.score is not None])
        pooled = {
            k: Score.pooled([t.score for t in arms[k] if t.score is not None])
            for k in keys
            if k != base_key and arms.get(k)
        }
        pooled = {k: p for k, p in pooled.items() if p.feasible}  # a refused leader is no choice
        if not pooled:
            return False
        best = min(pooled, key=lambda k: pooled[k].loss)
        iv = gain_interval(
            base.samples,
            pooled[best].samples,
            base.direction,
            seed=self.config.seed,
            confidence=self._confidence(),
        )
        return not iv.significant and iv.gain >= 1.0 and iv.lo < 1.0 + self.config.min_gain <= iv.hi

    def _main_knob_only(
        self, point: tuple[int, ...], changed: Sequence[int], base_point: tuple[int, ...]
    ) -> Candidate | None:
        """The candidate that keeps only the change the search's trials credit most: for each changed
        knob, how much worse the best trial *without* the best's level of it is than the best trial with
        it (what can be had without this change; robust to a few trials that share several levels)."""
        trials = [
            t
            for t in self.trials
            if t.role is TrialRole.SEARCH and t.usable and t.point is not None and t.score is not None
        ]
        effects = []
        for i in changed:
            same = [t.score.loss for t in trials if t.point[i] == point[i]]  # type: ignore[index,union-attr]
            other = [t.score.loss for t in trials if t.point[i] != point[i]]  # type: ignore[index,union-attr]
            if same and other:
                effects.append((min(other) - min(same), i))
        effects.sort(reverse=True)
        if not effects or effects[0][0] <= 0 or (len(effects) > 1 and effects[1][0] >= 0.5 * effects[0][0]):
            return None  # the trials do not single one change out
        singles: dict[int, Candidate] = {}
        for j in changed:
            only = list(base_point)
            only[j] = point[j]
            try:
                singles[j] = self.space.candidate(tuple(only))
            except KnobError:
                continue
        _, i = effects[0]
        if i not in singles:
            return None
        # never ahead of the cost order: a cheaper one-knob setting (TCP_NODELAY rather than TCP_QUICKACK)
        # may do as well, and one-at-a-time elimination, cheapest first, finds it
        cost = self.space.cost(singles[i].assignment)
        if any(self.space.cost(c.assignment) < cost for c in singles.values()):
            return None
        return singles[i]

    def _confirm(self) -> None:
        """Confirm the leaders. When the confirmation refuses every one of them, the candidate that rode as
        the reserve in the adopted round takes their place (:meth:`_adopt_reserve`), else the next
        promising candidates are confirmed in turn (at most :data:`_CONFIRM_REPLACEMENTS` times)."""
        if self.config.confirm == 0:
            return
        confirmed: set[str] = set()
        for _ in range(1 + _CONFIRM_REPLACEMENTS):
            refused = self._refused()
            if refused and not self._confirmed_keys() - refused:  # every leader confirmed so far refused
                reserve = self._adopt_reserve()
                if reserve is not None:
                    self._confirm_leaders([reserve])  # its top-ups, where the gain is unclear
                    return
                if not self._fits():  # --time must hold a replacement
                    return
            leaders = self._leaders()
            if not leaders or set(leaders) <= confirmed:
                return
            if not self._confirm_leaders(leaders):
                return
            confirmed |= set(leaders)
            if self._confirmed_keys() - self._refused():
                return

    def _confirm_leaders(self, leaders: Sequence[str]) -> bool:
        """The confirmation of ``leaders`` against the baseline (False: the time budget or failed runs
        stopped it)."""
        keys = [assignment_key({}), *leaders]
        missing = [
            k for k in keys if not any(t.usable for t in self._by_key[k] if t.role is TrialRole.CONFIRM)
        ]
        if missing and not self._confirm_round(missing):
            return False
        if not self._tops_up():
            return True
        while min(self._confirm_samples(k) for k in keys) < MIN_REPEATS:
            if not self._confirm_round([k for k in keys if self._confirm_samples(k) < MIN_REPEATS]):
                return False
        while self._unclear(keys) and min(self._confirm_samples(k) for k in keys) < self.config.max_repeats:
            log.info(
                "study.more_repeats",
                samples=min(self._confirm_samples(k) for k in keys),
                cap=self.config.max_repeats,
            )
            if not self._confirm_round(keys):
                return False
        return True

    def _decide(self, stop_reason: str) -> StudyResult:
        arms = self._arms()
        base_key = assignment_key({})
        base_trials = arms.get(base_key, [])
        if not base_trials:
            raise SearchError("no usable baseline measurement", hint="see the failed trials in the journal")
        base_score = Score.pooled([t.score for t in base_trials if t.score is not None])
        base_m = pool_measurements([t.measurement for t in base_trials if t.measurement is not None])
        direction = base_score.direction
        elapsed = self.elapsed()

        def kept(
            verdict: Verdict, best: Mapping[str, Value] | None, interval: GainInterval | None
        ) -> StudyResult:
            """The defaults stay: nothing is recommended (``best``: the leader that was not good enough)."""
            return StudyResult(
                base_m,
                base_m,
                {},
                base_score,
                base_score,
                verdict,
                tuple(self.trials),
                stop_reason,
                dict(best or {}),
                interval,
                elapsed,
            )

        # the confirmed candidates (with those refused) where a confirmation ran, else the leaders
        confirmed_keys = self._confirmed_keys()
        current = self._leaders()  # (each call ranks the candidates with bootstrap intervals)
        leaders = sorted(confirmed_keys, key=lambda k: (k not in current, k)) if confirmed_keys else current
        # judge only on what was measured side by side when the leaders were confirmed
        pooled = {
            k: Score.pooled([t.score for t in arms[k] if t.score is not None]) for k in leaders if arms.get(k)
        }
        # a leader its confirmation refused (it killed a live connection, broke a bound) is no choice,
        # however well it scored: the search's runs passed it by luck
        refused = {k: s for k, s in pooled.items() if not s.feasible}
        pooled = {k: s for k, s in pooled.items() if s.feasible}
        for k, s in refused.items():
            log.info("confirm.refused", assignment=k, reason=s.reason)
        seed = self.config.seed
        level = self._confidence()

        def compare(b: Score, a: Score) -> GainInterval:
            return gain_interval(b.samples, a.samples, direction, seed=seed, confidence=level)

        if refused and not pooled:
            key, score = min(refused.items(), key=lambda kv: dataclasses.replace(kv[1], feasible=True).loss)
            interval = compare(base_score, score)
            text = (
                f"no claim, keep the defaults: the confirmation refused every leader (the best measured "
                f"{interval.gain:.3g}x the baseline, but {score.reason})"
            )
            return kept(Verdict(False, interval, text), arms[key][0].assignment, interval)

        def beats(a: Score, b: Score) -> bool:
            """``a`` is better than ``b`` beyond noise, and by at least ``min_gain``."""
            iv = compare(b, a)
            return iv.significant and iv.lo > 1.0 and iv.gain >= 1.0 + self.config.min_gain

        ranked = self._ranked()
        if not pooled and ranked:
            # the search's runs already show every candidate short of a worthwhile gain (see _promising)
            best_search = self._search_score(ranked[0])
            search_interval = compare(base_score, best_search)
            if ranked[0] in self._promising():  # worth a confirmation, but none was measured
                why = (
                    "the confirmation was turned off"
                    if self.config.confirm == 0
                    else "the time budget left no room for it: give a longer --time"
                )
                text = (
                    f"no claim, keep the defaults: the best candidate measured {search_interval.gain:.3g}x "
                    f"the baseline in the search, but it was not confirmed side by side ({why})"
                )
            else:
                text = (
                    f"no significant gain, keep the defaults (the best candidate measured "
                    f"{search_interval.gain:.3g}x the baseline in the search, at most "
                    f"{search_interval.hi:.3g}x: short of the {self.config.min_gain:.0%} worth a change, "
                    "so it was not confirmed)"
                )
            return kept(
                Verdict(False, search_interval, text), self._by_key[ranked[0]][0].assignment, search_interval
            )
        if not pooled:
            measured = [
                t
                for t in self.trials
                if t.state is not TrialState.REJECTED and t.role is not TrialRole.BASELINE
            ]
            broken = sum(1 for t in measured if t.state in (TrialState.FAILED, TrialState.INVALID))
            why = (
                f": no candidate could be judged ({broken} of {len(measured)} runs failed or were invalid)"
                if broken
                else ""
            )
            keep = Verdict(
                False, GainInterval(1.0, 1.0, 1.0, level), f"no significant gain, keep the defaults{why}"
            )
            return kept(keep, None, None)
        best_key = min(pooled, key=lambda k: pooled[k].loss)
        best_trial = arms[best_key][0]
        leader_interval = compare(base_score, pooled[best_key])
        # among the settings the best does not beat beyond noise, the cheapest wins (the baseline costs 0)
        candidates = {k: s for k, s in pooled.items() if not beats(pooled[best_key], s)}
        if not beats(pooled[best_key], base_score):
            candidates[base_key] = base_score
        # a tie in which a buffer held the flow back (tcp_info) is no tie when another one was free of it
        held = {k: _held_back(arms[k] if k != base_key else base_trials) for k in candidates}
        if any(not h for h in held.values()):
            candidates = {k: s for k, s in candidates.items() if not held[k]}
        chosen = min(
            candidates,
            key=lambda k: (
                self.space.cost(arms[k][0].assignment) if k != base_key else 0.0,
                candidates[k].loss,
            ),
        )

        def keep_defaults(interval: GainInterval, why: str) -> StudyResult:
            if interval.enough:
                size = (
                    f"{interval.gain:.3g}x the baseline, {interval.lo:.3g}x..{interval.hi:.3g}x at "
                    f"{interval.confidence * 100:.4g}% confidence"
                )
                text = f"no significant gain, keep the defaults (the best candidate was {size}: {why})"
            else:
                text = (
                    f"no claim, keep the defaults: {interval.why_not} (the best candidate measured "
                    f"{interval.gain:.3g}x the baseline){self._quick_look_hint()}"
                )
            return kept(Verdict(False, interval, text), best_trial.assignment, leader_interval)

        if not leader_interval.enough:
            return keep_defaults(leader_interval, "not enough samples")
        if chosen == base_key:
            return keep_defaults(leader_interval, leader_interval.why_not or "within noise")
        chosen_score = pooled[chosen]
        interval = compare(base_score, chosen_score)
        chosen_m = pool_measurements([t.measurement for t in arms[chosen] if t.measurement is not None])
        if interval.significant and interval.lo > 1.0 and interval.gain >= 1.0 + self.config.min_gain:
            confirmed = all(t.role is TrialRole.CONFIRM for t in [*arms[chosen], *base_trials])
            text = (
                f"{self.objective.name.split(':')[0]} {interval.gain:.3g}x better than the baseline "
                f"({interval.lo:.3g}x..{interval.hi:.3g}x at {interval.confidence * 100:.4g}% confidence; "
                f"Mann-Whitney p = {interval.p_value:.2g}, {interval.n_baseline} vs {interval.n_candidate} repeats)"
            )
            if not confirmed:
                text += (
                    " - not confirmed side by side (a confirmation run failed): judged on the search's runs"
                )
            verdict = Verdict(True, interval, text)
            assignment = dict(arms[chosen][0].assignment)
            return StudyResult(
                base_m,
                chosen_m,
                assignment,
                base_score,
                chosen_score,
                verdict,
                tuple(self.trials),
                stop_reason,
                dict(best_trial.assignment),
                leader_interval,
                elapsed,
                confirmed,
            )
        if not interval.enough or not interval.significant or interval.lo <= 1.0:
            return keep_defaults(interval, interval.why_not or "within noise")
        return keep_defaults(interval, f"a gain below {self.config.min_gain:.0%} is not worth a change")

    def _quick_look_hint(self) -> str:
        if self._tops_up():
            return ""
        return (
            f"; --repeats {self.config.repeats} is a quick look: leave --repeats at its default or give "
            f"{MIN_REPEATS} or more for a claim"
        )
