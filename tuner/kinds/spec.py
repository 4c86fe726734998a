"""KindSpec: everything the layers need to know about one workload kind, in one frozen record.

Each kind's module (:mod:`tuner.kinds.rr`, ...) defines its record; :mod:`tuner.kinds` registers them.
The CLI starts a workload from the record's default; the probe runner runs its probe; the search builds
its space from its knobs and levels, scores with its objective and sizes each measurement from its
repeats and window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tuner.knobs import Value
from tuner.probe.base import RepeatEnv, Sample
from tuner.scoring import Objective
from tuner.workload import NetworkPath, Workload, WorkloadKind

__all__ = ["UINT_MAX", "WINDOW_MAX_S", "WINDOW_MIN_S", "KiB", "KindSpec", "MiB", "Probe", "window"]

KiB = 1024
MiB = 1024 * KiB
UINT_MAX = 2**32 - 1

# A measured window sized from the path (bulk, rr) holds at least 0.5 s (timer and scheduler noise on a
# busy machine) and at most 2.5 s.
WINDOW_MIN_S, WINDOW_MAX_S = 0.5, 2.5

Probe = Callable[[RepeatEnv], Sample]  # one repeat of a kind's probe in a sandbox (tuner.probe.*)
Levels = tuple[Value | None, ...]


def window(seconds: float, floor: float = WINDOW_MIN_S) -> float:
    """``seconds`` of measured window, kept within ``floor`` .. :data:`WINDOW_MAX_S`."""
    return min(WINDOW_MAX_S, max(floor, seconds))


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class KindSpec:
    """One workload kind: its default workload, probe, search space, objective and probe settings.

    ``levels`` holds a knob's levels where the kind needs a particular resolution (the baseline value is
    always added; other knobs' levels derive from the catalogue, see :mod:`tuner.search.space`).
    ``path_levels`` gives levels that follow the path (a bulk search's buffers from its bandwidth-delay
    product); they replace ``levels`` for the knobs it names. ``window`` sizes the seconds per repeat from
    (the default ``duration``, the path's RTT); without it the default holds on every path."""

    kind: WorkloadKind
    workload: Workload  # the default workload; CLI flags and profiles change fields of it
    probe: Probe
    objective: Objective  # the default objective
    knobs: tuple[str, ...]  # searched by default
    optional_knobs: tuple[str, ...] = ()  # those a user may add with --knob
    # knobs the probe cannot exercise (searching them fits noise): knob -> why; refused, also by --auto
    inert_knobs: Mapping[str, str] = field(default_factory=dict)
    levels: Mapping[str, Levels] = field(default_factory=dict)
    path_levels: Callable[[NetworkPath], Mapping[str, tuple[int, ...]]] | None = None
    # the textbook setting for a path (knob -> level of its searched part; a knob whose baseline is
    # already higher stays there), which the search's design measures first (tuner.search.space.Space.anchor)
    path_anchor: Callable[[NetworkPath], Mapping[str, int]] | None = None
    counter_metrics: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # metric -> (side, counter)
    # (repeats, seconds per repeat) of each probe in a search, unless the user chooses: short enough
    # that the default budget finishes in about a minute, long enough for a stable median
    repeats: int = 3
    duration: float = 0.5
    window: Callable[[float, float], float] | None = None
    default_loss: float = 0.0  # NetworkPath loss the kind is measured over unless the user gives one
    # the path a search measures over when the user gives neither an RTT nor a rate (None: a plain link),
    # for a kind whose metric a plain link cannot move (the loss is still the user's or default_loss)
    search_path: NetworkPath | None = None
    # p99 lateness of the delay line (ms) a repeat of this kind tolerates, where its metric resolves a
    # coarser time scale than the path's default limit (None; tuner.sandbox.health.MAX_LATE_P99_MS):
    # packets a millisecond late spoil a latency or a goodput figure, not a keepalive timer's.
    max_late_p99_ms: float | None = None
    # repeats a search may measure at once, each in a sandbox of its own (tuner.probe.side_by_side), for
    # a probe that waits on timers rather than on the CPU; 1: one at a time (the probe needs the CPU)
    side_by_side: int = 1
    # the default trial budget of a search, where the kind's differs from the search's (8): a kind
    # measured side by side fills its first batch with the design at the wall time of one measurement
    budget: int | None = None
    # (knob, why) for a setting whose measurement over a path this kind's probe could not judge, so that
    # the objective would refuse it whatever it measured (keepalive timers too slow for the healthy phase
    # to show their risk): a search never measures such a setting
    unjudgeable: Callable[[Mapping[str, Value | None], NetworkPath], tuple[str, str] | None] | None = None

    def __post_init__(self) -> None:
        if self.workload.kind is not self.kind:
            raise ValueError(f"the {self.kind.value} record's default workload is {self.workload.kind.value}")
        for name in ("inert_knobs", "levels", "counter_metrics"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def probe_settings(self, path: NetworkPath | None = None) -> tuple[int, float]:
        """(repeats, seconds per repeat) of each measurement over ``path``: the window sized from the
        path's RTT where the kind needs it, else the default."""
        rtt = path.rtt if path is not None and path.rtt else 0.0
        duration = self.window(self.duration, rtt) if self.window is not None else self.duration
        return self.repeats, duration

    def path_level_map(self, path: NetworkPath | None) -> Mapping[str, tuple[int, ...]]:
        """The levels that follow ``path`` (none without a path or a rule)."""
        return self.path_levels(path) if self.path_levels is not None and path is not None else {}
