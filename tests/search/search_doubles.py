"""Fixtures for the search tests.

``SyntheticMeasure`` is a test double for the *probe*, used only to exercise the search mechanics
(ask/tell, journal, resume, failures, confirmation, verdicts, constraints): it is a deterministic,
clearly labelled function of the assignment with seeded noise, never presented as a real measurement.
Tests of what the search finds on real traffic use the real probe in a real sandbox.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from tuner.kinds import DEFAULT_WORKLOADS
from tuner.knobs import KernelFacts
from tuner.probe.measurement import Measurement, summarize
from tuner.search.study import Batch
from tuner.workload import NetworkPath, WorkloadKind

# Live values as a stock kernel shows them (what build_space gets from the sandbox namespace and host).
STOCK = {
    "net.core.somaxconn": 4096,
    "net.ipv4.tcp_rmem": (4096, 131072, 6291456),
    "net.ipv4.tcp_wmem": (4096, 16384, 4194304),
    "net.ipv4.tcp_max_syn_backlog": 512,
    "net.ipv4.tcp_congestion_control": "cubic",
    "net.ipv4.tcp_syncookies": 1,
    "net.ipv4.tcp_slow_start_after_idle": True,
    "net.ipv4.tcp_notsent_lowat": 4294967295,
    "net.core.rmem_max": 212992,
    "net.core.wmem_max": 212992,
    "net.core.rmem_default": 212992,
    "net.core.wmem_default": 212992,
    "net.ipv4.tcp_keepalive_time": 7200,
    "net.ipv4.tcp_keepalive_intvl": 75,
    "net.ipv4.tcp_keepalive_probes": 9,
}
FACTS = KernelFacts(frozenset({"reno", "cubic", "bbr"}), frozenset({"reno", "cubic", "bbr"}))


@dataclass
class SyntheticMeasure:
    """Test double of the probe: ``metric_fn(assignment)`` -> {metric: true value}; each of ``repeats``
    samples gets multiplicative seeded noise of +-``noise``. Counts calls and records assignments."""

    kind: WorkloadKind
    metric_fn: Callable[[Mapping[str, object]], dict[str, float]]
    noise: float = 0.02
    repeats: int = 3
    seed: int = 0
    fail_when: Callable[[Mapping[str, object]], bool] | None = None
    calls: list[dict] = field(default_factory=list)
    prunable: bool = False  # True: accepts ``repeats=`` so a study may prune after one repeat
    repeat_calls: list[int] = field(default_factory=list)  # repeats run by each call
    on_repeat: Callable[[], None] | None = None  # called per repeat (tests advance a fake clock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self, assignment, repeats=None):
        n = repeats or self.repeats
        self.calls.append(dict(assignment))
        self.repeat_calls.append(n)
        if self.on_repeat is not None:
            for _ in range(n):
                self.on_repeat()
        if self.fail_when is not None and self.fail_when(assignment):
            raise RuntimeError("synthetic probe failure")
        truth = self.metric_fn(assignment)
        metrics = {
            name: summarize([v * (1 + self._rng.uniform(-self.noise, self.noise)) for _ in range(n)])
            for name, v in truth.items()
        }
        return Measurement(
            workload=DEFAULT_WORKLOADS[self.kind],
            path=NetworkPath(),
            assignment=dict(assignment),
            metrics=metrics,
            backend="none",
            repeats=n,
            duration=0.1,
        )


def rr_truth(a):
    """Nagle trap: ~44 ms without TCP_NODELAY; a small buffer hurts a little."""
    lat = 0.2 if a.get("TCP_NODELAY") else 44.0
    if a.get("SO_SNDBUF", 1 << 20) < 64 * 1024:
        lat *= 1.5
    return {"latency_p99_ms": lat, "tps": 1000.0 / lat}


@pytest.fixture
def facts():
    return FACTS


@pytest.fixture
def stock():
    return dict(STOCK)


@dataclass
class SideBySideMeasure(SyntheticMeasure):
    """``SyntheticMeasure`` that also measures side by side (``Measure.side_by_side``): each call of
    ``many`` is one batch (recorded in ``batches``), ``width`` repeats at a time; with ``on_repeat`` a
    batch advances the clock by one repeat per ``width`` repeats (they run at once)."""

    width: int = 16
    batches: list[list[tuple[dict, int]]] = field(default_factory=list)

    @property
    def side_by_side(self):
        return Batch(self.width, self.repeats, self.many)

    def many(self, requests):
        self.batches.append([(dict(a), n) for a, n in requests])
        clock, self.on_repeat = self.on_repeat, None
        try:
            out = [SyntheticMeasure.__call__(self, a, n) for a, n in requests]
        finally:
            self.on_repeat = clock
        if clock is not None:
            for _ in range(-(-sum(n for _, n in requests) // self.width)):
                clock()
        return out

    def __call__(self, assignment, repeats=None):
        return self.many([(assignment, repeats or self.repeats)])[0]
