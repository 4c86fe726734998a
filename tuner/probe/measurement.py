"""Measurement: what a probe returns, and the statistics of repeated samples.

A Measurement is plain data (``to_dict``/``from_dict`` round-trip through JSON and TOML), so it can be
journaled by a study and stored as a profile's evidence.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tuner.knobs import json_value
from tuner.workload import NetworkPath, Workload

__all__ = ["METRICS", "Better", "Measurement", "MetricInfo", "Stat", "pool_measurements", "summarize"]


class Better(Enum):
    LOWER = "lower"
    HIGHER = "higher"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str
    better: Better
    description: str
    # a diagnosis (what held a flow back), not a cost: a flow that fills its path is often limited by
    # its receive window, and a verdict does not list it as "worse" (it is still reported)
    diagnostic: bool = False


def _m(
    name: str, unit: str, better: Better, description: str, *, diagnostic: bool = False
) -> tuple[str, MetricInfo]:
    return name, MetricInfo(name, unit, better, description, diagnostic)


L, H = Better.LOWER, Better.HIGHER
METRICS: Mapping[str, MetricInfo] = dict(
    [
        _m("tps", "1/s", H, "transactions per second"),
        _m("latency_p50_ms", "ms", L, "median request latency"),
        _m("latency_p90_ms", "ms", L, "90th percentile request latency"),
        _m("latency_p99_ms", "ms", L, "99th percentile request latency"),
        _m("latency_max_ms", "ms", L, "largest request latency"),
        _m("goodput_mbps", "Mbit/s", H, "application bytes delivered per second"),
        _m("retransmits", "segments", L, "TCP segments retransmitted"),
        _m(
            "sndbuf_limited_pct",
            "%",
            L,
            "share of time the sender was limited by its send buffer",
            diagnostic=True,
        ),
        _m(
            "rwnd_limited_pct",
            "%",
            L,
            "share of time the sender was limited by the receive window",
            diagnostic=True,
        ),
        _m("connect_p50_ms", "ms", L, "median connect time"),
        _m("connect_p99_ms", "ms", L, "99th percentile connect time"),
        _m("connect_max_ms", "ms", L, "largest connect time"),
        _m("connect_failed", "connections", L, "connects that failed"),
        _m("connect_rate", "1/s", H, "connections established per second"),
        _m(
            "listen_overflows", "events", L, "accept-queue overflows at the listener (TcpExt.ListenOverflows)"
        ),
        _m("listen_drops", "events", L, "connection attempts the listener dropped (TcpExt.ListenDrops)"),
        _m("delivered_fraction", "", H, "share of datagrams the reader received"),
        _m("reader_latency_ms", "ms", L, "median time from send to read"),
        _m("reader_latency_p99_ms", "ms", L, "99th percentile time from send to read"),
        _m("rcvbuf_errors", "datagrams", L, "datagrams dropped for a full receive buffer (Udp.RcvbufErrors)"),
        _m("detect_s", "s", L, "time until the survivor noticed the dead peer"),
        _m("detected_fraction", "", H, "share of connections whose dead peer was noticed within the window"),
        _m("false_kills", "connections", L, "healthy connections the survivor dropped over the lossy path"),
        _m(
            "healthy_keepalive_probes",
            "probes",
            L,
            "keepalive probes sent while the peer was alive (the exposure behind false_kills; their cost is "
            "scored through keepalive_packets_per_conn_hour)",
            diagnostic=True,
        ),
        _m(
            "keepalive_packets_per_conn_hour",
            "packets",
            L,
            "keepalive probes per connection-hour (computed from the settings, not measured)",
        ),
        _m("bytes_per_conn", "bytes", L, "kernel socket memory per connection"),
        _m(
            "queued_bytes_per_conn",
            "bytes",
            L,
            "bytes of pending data held in the kernel's queues per connection",
        ),
    ]
)


@dataclass(frozen=True)
class Stat:
    """Median of repeated samples with a confidence interval of the median."""

    median: float
    lo: float
    hi: float
    samples: tuple[float, ...] = ()

    @property
    def spread(self) -> float:
        """Half-width of the interval relative to the median (0.05 = +-5%)."""
        if self.median == 0:
            return 0.0 if self.hi == self.lo else math.inf
        return (self.hi - self.lo) / 2 / abs(self.median)

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "lo": self.lo, "hi": self.hi, "samples": list(self.samples)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stat:
        return cls(
            float(d["median"]), float(d["lo"]), float(d["hi"]), tuple(float(x) for x in d.get("samples", ()))
        )


def summarize(samples: Sequence[float]) -> Stat:
    """Median and a distribution-free ~95% interval of the median (order statistics).

    With fewer than 6 samples no such interval exists at 95%; the range min..max is given instead
    (a conservative interval, about 75-94% for 3-5 samples).
    """
    xs = sorted(float(x) for x in samples)
    if not xs:
        raise ValueError("no samples")
    n = len(xs)
    med = statistics.median(xs)
    if n < 6:
        return Stat(med, xs[0], xs[-1], tuple(samples))
    # normal approximation of the binomial rank interval
    half = 1.96 * math.sqrt(n) / 2
    lo_rank = max(0, math.floor(n / 2 - half))
    hi_rank = min(n - 1, math.ceil(n / 2 + half) - 1)
    return Stat(med, xs[lo_rank], xs[hi_rank], tuple(samples))


@dataclass(frozen=True)
class Measurement:
    workload: Workload
    path: NetworkPath
    assignment: Mapping[str, Any]
    metrics: Mapping[str, Stat] = field(default_factory=dict)
    counters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # side -> counter deltas
    backend: str = "none"  # path backend: none, netem, tun
    health: Mapping[str, float] = field(default_factory=dict)
    repeats: int = 0
    duration: float = 0.0  # seconds per repeat, warm-up excluded
    valid: bool = True
    invalid_reason: str | None = None  # e.g. "sandbox: 12 packets dropped at the TUN ring"
    failed: bool = False
    error: str | None = None
    # the load generator held the run back (a closed loop's busy client): still valid, but its figures
    # are a pessimistic bound: fair for a candidate (it can only look worse), never for a baseline (every
    # candidate would look better against it); the study refuses it there
    held_back: str | None = None
    notes: tuple[str, ...] = ()  # what a reader should know (e.g. a metric derived, not measured)
    computed: Mapping[str, float] = field(default_factory=dict)  # figures computed from the settings:
    # not measured, so no interval (e.g. keepalive packets per hour)
    baseline: Mapping[str, Any] = field(
        default_factory=dict
    )  # {"source", "settings"}: the target's values it ran on

    def value(self, metric: str) -> float:
        return self.metrics[metric].median

    @property
    def usable(self) -> bool:
        return self.valid and not self.failed

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "workload": self.workload.to_dict(),
            "path": self.path.to_dict(),
            "assignment": {k: json_value(v) for k, v in self.assignment.items()},
            "metrics": {k: s.to_dict() for k, s in self.metrics.items()},
            "counters": {side: dict(c) for side, c in self.counters.items()},
            "backend": self.backend,
            "health": dict(self.health),
            "repeats": self.repeats,
            "duration": self.duration,
            "valid": self.valid,
            "failed": self.failed,
        }
        if self.invalid_reason is not None:
            d["invalid_reason"] = self.invalid_reason
        if self.error is not None:
            d["error"] = self.error
        if self.held_back is not None:
            d["held_back"] = self.held_back
        if self.notes:
            d["notes"] = list(self.notes)
        if self.computed:
            d["computed"] = dict(self.computed)
        if self.baseline:
            d["baseline"] = {
                "source": self.baseline.get("source"),
                "settings": {k: json_value(v) for k, v in self.baseline.get("settings", {}).items()},
            }
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurement:
        return cls(
            workload=Workload.from_dict(d["workload"]),
            path=NetworkPath.from_dict(d["path"]),
            assignment={
                k: tuple(v) if isinstance(v, list) else v for k, v in d.get("assignment", {}).items()
            },
            metrics={k: Stat.from_dict(s) for k, s in d.get("metrics", {}).items()},
            counters={side: dict(c) for side, c in d.get("counters", {}).items()},
            backend=d.get("backend", "none"),
            health=dict(d.get("health", {})),
            repeats=int(d.get("repeats", 0)),
            duration=float(d.get("duration", 0.0)),
            valid=bool(d.get("valid", True)),
            invalid_reason=d.get("invalid_reason"),
            failed=bool(d.get("failed", False)),
            error=d.get("error"),
            held_back=d.get("held_back"),
            notes=tuple(d.get("notes", ())),
            computed={k: float(v) for k, v in d.get("computed", {}).items()},
            baseline=dict(d.get("baseline", {})),
        )


def pool_measurements(ms: Sequence[Measurement], note: str | None = None) -> Measurement:
    """One measurement from several of the same setting (a search trial's repeats taken in two runs, a
    confirmation's rounds, repeats taken side by side): every repeat's samples per metric, counter
    deltas summed, the path's health merged (counts summed, lateness the worst run's), computed figures
    the median; invalid, failed or held back when any run was, with its reason. ``note`` is added to
    the notes."""
    from tuner.sandbox.health import PathHealth, merge_health  # the path's record, loaded when pooling

    if not ms:
        raise ValueError("nothing to pool")
    if len(ms) == 1 and note is None:
        return ms[0]
    first = ms[0]
    names = [n for n in first.metrics if all(n in m.metrics for m in ms)]
    metrics = {
        n: summarize([x for m in ms for x in (m.metrics[n].samples or (m.metrics[n].median,))]) for n in names
    }
    counters: dict[str, dict[str, int]] = {}
    for m in ms:
        for side, c in m.counters.items():
            dst = counters.setdefault(side, {})
            for k, v in c.items():
                dst[k] = dst.get(k, 0) + int(v)
    computed = {
        name: statistics.median([m.computed[name] for m in ms if name in m.computed])
        for name in dict.fromkeys(n for m in ms for n in m.computed)
    }
    parts = [PathHealth.from_dict(m.health) for m in ms if m.health]
    health = (
        {k: v for k, v in merge_health(parts).to_dict().items() if isinstance(v, (int, float))}
        if parts
        else {}
    )
    failed = next((m for m in ms if m.failed), None)
    invalid = next((m for m in ms if not m.valid), None)
    held = next((m for m in ms if m.held_back), None)
    notes = tuple(dict.fromkeys(n for m in ms for n in m.notes)) + ((note,) if note else ())
    return Measurement(
        workload=first.workload,
        path=first.path,
        assignment=dict(first.assignment),
        metrics=metrics,
        counters=counters,
        backend=first.backend,
        health=health,
        repeats=sum(m.repeats for m in ms),
        duration=first.duration,
        valid=invalid is None,
        invalid_reason=invalid.invalid_reason if invalid is not None else None,
        failed=failed is not None,
        error=failed.error if failed is not None else None,
        held_back=held.held_back if held is not None else None,
        notes=notes,
        computed=computed,
        baseline=first.baseline,
    )
