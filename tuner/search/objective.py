"""The objective of a search: the kind's default (from its record in :mod:`tuner.kinds`) or the user's
``--objective METRIC[:min|max]``. The objective types live in :mod:`tuner.scoring`; the ones the search
layer works with are re-exported here."""

from __future__ import annotations

from tuner.errors import InputError
from tuner.kinds import spec
from tuner.probe.measurement import METRICS, Better
from tuner.scoring import Goal, MetricObjective, Objective, Score, gain
from tuner.workload import WorkloadKind

__all__ = ["Goal", "Objective", "Score", "default_objective", "gain", "parse_objective"]


def default_objective(kind: WorkloadKind) -> Objective:
    return spec(kind).objective


def parse_objective(text: str | None, kind: WorkloadKind) -> Objective:
    """``None`` -> the kind's default; ``METRIC[:min|max]`` -> that metric (direction from the metric)."""
    if text is None or text == "" or text == "default":
        return default_objective(kind)
    metric, _, word = text.partition(":")
    metric = metric.strip()
    if metric not in METRICS:
        raise InputError(
            f"--objective {text}: unknown metric {metric!r}",
            hint=f"one of: {', '.join(METRICS)} (optionally with :min or :max)",
        )
    if word:
        try:
            direction = Goal(word.strip().lower())
        except ValueError:
            raise InputError(
                f"--objective {text}: {word!r} is neither min nor max", hint="write METRIC:min or METRIC:max"
            ) from None
    else:
        direction = Goal.MIN if METRICS[metric].better is Better.LOWER else Goal.MAX
    return MetricObjective(metric, direction)
