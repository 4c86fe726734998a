"""Search: the space of a workload kind, samplers, the study, objectives, and `recommend`."""

from tuner.search.objective import Goal, Objective, Score, default_objective, parse_objective
from tuner.search.recommend import Recommendation, recommend
from tuner.search.samplers import SAMPLERS, GridSampler, RandomSampler, Sampler, SkoptSampler, make_sampler
from tuner.search.space import Candidate, Dimension, Space, build_space
from tuner.search.study import (
    Measure,
    SearchConfig,
    Study,
    StudyResult,
    Trial,
    TrialEvent,
    TrialRole,
    TrialState,
    Verdict,
)

__all__ = [
    "SAMPLERS",
    "Candidate",
    "Dimension",
    "Goal",
    "GridSampler",
    "Measure",
    "Objective",
    "RandomSampler",
    "Recommendation",
    "Sampler",
    "Score",
    "SearchConfig",
    "SkoptSampler",
    "Space",
    "Study",
    "StudyResult",
    "Trial",
    "TrialEvent",
    "TrialRole",
    "TrialState",
    "Verdict",
    "build_space",
    "default_objective",
    "make_sampler",
    "parse_objective",
    "recommend",
]
