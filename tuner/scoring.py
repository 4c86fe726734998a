"""Objectives: turn a Measurement into one score.

Each workload kind names its default objective in its record (:mod:`tuner.kinds`); ``--objective``
overrides it (:func:`tuner.search.objective.parse_objective`). A :class:`Score` keeps the objective's
own units (milliseconds, Mbit/s, a fraction) and its direction, with one value per repeat so that a study can put a confidence interval on a gain. Samplers minimise a
*loss*: the log of the score, negated for objectives to maximise (the log evens out scores that span
orders of magnitude, such as 44 ms against 0.05 ms). Pure functions only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from tuner.probe.measurement import METRICS, Measurement
from tuner.probe.udp import OVERLOAD_NOTE

__all__ = [
    "KEEPALIVE_PACKET_COST_S",
    "MEMORY_THROUGHPUT_FLOOR",
    "UDP_LATENCY_SLACK_MS",
    "Goal",
    "KeepaliveObjective",
    "MemoryObjective",
    "MetricObjective",
    "Objective",
    "Score",
    "UdpObjective",
    "gain",
    "udp_latency_bound_ms",
]

# Keepalive: 1000 probe packets per connection-hour (one every 3.6 s) cost as much as one second of
# detection time; the best keepalive idle time under this cost alone is sqrt(3600 * cost) ~ 2 s.
KEEPALIVE_PACKET_COST_S = 0.001
# Memory: a setting must keep at least this share of the baseline's throughput to count.
MEMORY_THROUGHPUT_FLOOR = 0.9
_THROUGHPUT_METRICS = ("tps", "goodput_mbps", "connect_rate")
# UDP: reader latency a buffer may add beyond serving two bursts (scheduling, the first read)
UDP_LATENCY_SLACK_MS = 10.0
_EPS = 1e-9


class Goal(Enum):
    MIN = "min"
    MAX = "max"


@dataclass(frozen=True)
class Score:
    """An objective's value for one measurement: the median over repeats and the per-repeat values."""

    value: float
    samples: tuple[float, ...]
    direction: Goal
    feasible: bool = True
    reason: str | None = None
    # how far a refused setting is from the objective's limit, a ratio >= 0 (0: at it, or not known):
    # healthy connections killed per repeat, a bound exceeded by 30% -> 0.3. A search steers by it.
    violation: float = 0.0

    @property
    def loss(self) -> float:
        """What a sampler minimises (log scale; larger is worse). Infinite when infeasible."""
        if not self.feasible or not math.isfinite(self.value):
            return math.inf
        v = math.log(max(self.value, _EPS))
        return v if self.direction is Goal.MIN else -v

    def better_than(self, other: Score) -> bool:
        return self.loss < other.loss

    def to_dict(self) -> dict:
        d = {
            "value": self.value,
            "samples": list(self.samples),
            "direction": self.direction.value,
            "feasible": self.feasible,
        }
        if self.reason:
            d["reason"] = self.reason
        if self.violation:
            d["violation"] = self.violation
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Score:
        return cls(
            float(d["value"]),
            tuple(float(x) for x in d.get("samples", ())),
            Goal(d["direction"]),
            bool(d.get("feasible", True)),
            d.get("reason"),
            float(d.get("violation", 0.0)),
        )

    @classmethod
    def pooled(cls, scores: Sequence[Score]) -> Score:
        """One score from several measurements of the same setting: every repeat's value together."""
        if not scores:
            raise ValueError("no scores to pool")
        samples = tuple(x for s in scores for x in s.samples)
        feasible = all(s.feasible for s in scores)
        reason = next((s.reason for s in scores if s.reason), None)
        return cls(statistics.median(samples), samples, scores[0].direction, feasible, reason)


def gain(baseline: float, candidate: float, direction: Goal) -> float:
    """How many times better ``candidate`` is than ``baseline`` (1.0: the same; > 1: better)."""
    num, den = (baseline, candidate) if direction is Goal.MIN else (candidate, baseline)
    if den <= 0:
        return 1.0 if num <= 0 else math.inf
    return num / den


class Objective(Protocol):
    """Turns a measurement into a score; ``baseline`` is given for objectives relative to it."""

    @property
    def name(self) -> str: ...
    @property
    def direction(self) -> Goal: ...
    @property
    def metrics(self) -> tuple[str, ...]: ...
    def score(self, m: Measurement, baseline: Measurement | None = None) -> Score: ...
    def describe(self) -> str: ...


def _samples(m: Measurement, metric: str) -> tuple[float, ...]:
    if metric not in m.metrics:
        raise KeyError(metric)
    stat = m.metrics[metric]
    return tuple(stat.samples) if stat.samples else (stat.median,)


def _aligned(m: Measurement, metric: str, n: int) -> tuple[float, ...]:
    """Per-repeat values of ``metric`` to combine with another metric's ``n`` samples (the median
    repeated when the samples are not aligned)."""
    xs = _samples(m, metric)
    return xs if len(xs) == n else (m.value(metric),) * n


def _missing(m: Measurement, metric: str, direction: Goal) -> Score:
    return Score(
        math.inf if direction is Goal.MIN else 0.0,
        (),
        direction,
        False,
        f"the measurement has no {metric}",
    )


@dataclass(frozen=True)
class MetricObjective:
    """One metric of the measurement, minimised or maximised."""

    metric: str
    direction: Goal

    @property
    def name(self) -> str:
        return f"{self.metric}:{self.direction.value}"

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric,)

    def score(self, m: Measurement, baseline: Measurement | None = None) -> Score:
        if self.metric not in m.metrics:
            return _missing(m, self.metric, self.direction)
        xs = _samples(m, self.metric)
        return Score(m.metrics[self.metric].median, xs, self.direction)

    def describe(self) -> str:
        word = "minimise" if self.direction is Goal.MIN else "maximise"
        return f"{word} {self.metric} ({METRICS[self.metric].description})"


def _computed(m: Measurement, name: str) -> float | None:
    """A figure computed from the settings (no interval); older measurements kept it among the metrics."""
    if name in m.computed:
        return m.computed[name]
    return m.value(name) if name in m.metrics else None


@dataclass(frozen=True)
class KeepaliveObjective:
    """Measured detection time of a dead peer plus a cost for the keepalive packets that buy it, for
    settings that killed no healthy connection over the lossy path.

    A connection whose dead peer was not noticed within the probe's window counts as the window: a
    measured lower bound (the score says so), never a modelled detection time."""

    packet_cost_s: float = KEEPALIVE_PACKET_COST_S

    name = "detect_s+keepalive_cost:min"
    direction = Goal.MIN
    metrics = ("detect_s", "false_kills")

    def score(self, m: Measurement, baseline: Measurement | None = None) -> Score:
        if "detect_s" not in m.metrics:
            return _missing(m, "detect_s", Goal.MIN)
        detect = _samples(m, "detect_s")
        n = len(detect)
        packets = _computed(m, "keepalive_packets_per_conn_hour")
        if packets is None:
            return _missing(m, "keepalive_packets_per_conn_hour", Goal.MIN)
        xs = tuple(d + self.packet_cost_s * packets for d in detect)
        value = statistics.median(xs)
        if "false_kills" in m.metrics:
            kills = sum(_samples(m, "false_kills"))
            if kills > 0:
                return Score(
                    value,
                    xs,
                    Goal.MIN,
                    False,
                    f"{kills:g} healthy connection(s) killed over the lossy path: the timers give up "
                    "on a live peer",
                    violation=kills / max(n, 1),
                )
        else:
            return Score(
                value, xs, Goal.MIN, False, "the measurement has no false_kills: its risk is unknown"
            )
        detected = _aligned(m, "detected_fraction", n) if "detected_fraction" in m.metrics else (1.0,) * n
        if min(detected) < 1.0:
            return Score(
                value,
                xs,
                Goal.MIN,
                True,
                "lower bound: some dead peers were not noticed within the probe's window",
            )
        return Score(value, xs, Goal.MIN)

    def describe(self) -> str:
        return (
            f"minimise detect_s + {self.packet_cost_s:g} s per keepalive packet per connection-hour "
            f"(1000 probes an hour cost as much as {1000 * self.packet_cost_s:g} s of detection; the packets "
            "are computed from the settings); a peer not noticed within the probe's window counts as the "
            "window (a measured lower bound); settings that killed a healthy connection over the lossy "
            "path are refused"
        )


@dataclass(frozen=True)
class MemoryObjective:
    """Kernel memory per connection, for settings that keep the baseline's throughput (within a floor)."""

    floor: float = MEMORY_THROUGHPUT_FLOOR

    name = "bytes_per_conn:min"
    direction = Goal.MIN
    metrics = ("bytes_per_conn",)

    def score(self, m: Measurement, baseline: Measurement | None = None) -> Score:
        if "bytes_per_conn" not in m.metrics:
            return _missing(m, "bytes_per_conn", Goal.MIN)
        xs = _samples(m, "bytes_per_conn")
        value = m.value("bytes_per_conn")
        if baseline is not None:
            for metric in _THROUGHPUT_METRICS:
                if metric in m.metrics and metric in baseline.metrics:
                    need = self.floor * baseline.value(metric)
                    if m.value(metric) < need:
                        return Score(
                            value,
                            xs,
                            Goal.MIN,
                            False,
                            f"{metric} {m.value(metric):.4g} is below the floor {need:.4g} "
                            f"({self.floor:.0%} of the baseline)",
                            violation=need / max(m.value(metric), _EPS) - 1.0,
                        )
                    break
        return Score(value, xs, Goal.MIN)

    def describe(self) -> str:
        return f"minimise bytes_per_conn, keeping at least {self.floor:.0%} of the baseline's throughput"


def udp_latency_bound_ms(m: Measurement) -> float:
    """The reader latency a receive buffer that absorbs bursts may cost: the time the reader needs to
    serve two bursts, plus :data:`UDP_LATENCY_SLACK_MS`. A buffer that holds more than that holds a
    standing queue: the reader is behind its offered load, and the buffer only delays the loss."""
    w = m.workload
    serve_ms = 2e3 * max(w.udp_burst, 1) / w.service_rate if w.service_rate > 0 else 0.0
    return serve_ms + UDP_LATENCY_SLACK_MS


@dataclass(frozen=True)
class UdpObjective:
    """Delivered fraction in steady state, for settings whose median reader latency stays within
    :func:`udp_latency_bound_ms` (or within the baseline's own, when that is higher already). Under a
    sustained overload (the probe's note: reader capacity < offered) no candidate is feasible: a buffer
    is not the fix, so no buffer is claimed."""

    name = "delivered_fraction:max"
    direction = Goal.MAX
    metrics = ("delivered_fraction", "reader_latency_ms")

    def score(self, m: Measurement, baseline: Measurement | None = None) -> Score:
        if "delivered_fraction" not in m.metrics:
            return _missing(m, "delivered_fraction", Goal.MAX)
        xs = _samples(m, "delivered_fraction")
        value = m.value("delivered_fraction")
        if "reader_latency_ms" not in m.metrics:
            return Score(value, xs, Goal.MAX, False, "the measurement has no reader_latency_ms")
        if baseline is None:
            return Score(value, xs, Goal.MAX)  # the baseline is what runs; candidates are held to it
        overload = next((n for n in (*m.notes, *baseline.notes) if OVERLOAD_NOTE in n), None)
        if overload is not None:
            # a sustained overload: whatever a buffer changes, it is not the fix; make no buffer claim
            return Score(value, xs, Goal.MAX, False, overload)
        bound = udp_latency_bound_ms(m)
        if "reader_latency_ms" in baseline.metrics:
            bound = max(bound, baseline.value("reader_latency_ms"))
        latency = m.value("reader_latency_ms")
        if latency > bound:
            return Score(
                value,
                xs,
                Goal.MAX,
                False,
                f"reader latency {latency:.4g} ms is above the bound {bound:.4g} ms (two bursts' service "
                f"time + {UDP_LATENCY_SLACK_MS:g} ms): the buffer holds a standing queue",
                violation=latency / bound - 1.0,
            )
        return Score(value, xs, Goal.MAX)

    def describe(self) -> str:
        return (
            "maximise delivered_fraction (share of datagrams the reader received, in steady state) for "
            f"settings whose median reader latency stays within the time to serve two bursts + "
            f"{UDP_LATENCY_SLACK_MS:g} ms (or the baseline's, if higher): a larger buffer that only "
            "queues more is refused; under a sustained overload (reader capacity < offered) nothing is "
            "claimed"
        )
