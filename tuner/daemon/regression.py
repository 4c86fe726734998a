"""Whether a guarded apply regressed: the signals the guard compares, and its verification window.

Pure decisions over plain data:

- :func:`signals` turns counter readings and an observation into :class:`Signals`;
- :func:`judge` compares the signals after an apply with those before it;
- :class:`GuardWatch` is one verification window: it ends PASSED at its deadline or REGRESSED at the
  first sample :func:`judge` rejects.

The apply, the watching and the rollback are :class:`tuner.daemon.guarded.GuardedApply`; the writes
themselves go through tuner.apply's Applier (see tuner.daemon.access).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tuner.daemon.config import GuardConfig

__all__ = [
    "NAMESPACE",
    "GuardWatch",
    "Phase",
    "Signals",
    "combine",
    "counter_rates",
    "judge",
    "retrans_share",
    "signals",
]

_MIN_SEGMENTS = 200  # below this many segments sent in an interval, a retransmit share means nothing


@dataclass(frozen=True)
class Signals:
    """The live signals the guard compares: per-second counter rates over one interval, the share of
    retransmitted segments, each service's median rtt and the symptoms seen."""

    counter_rates: Mapping[str, float] = field(default_factory=dict)
    retrans_share: float | None = None
    rtt: Mapping[str, float] = field(default_factory=dict)  # service key -> seconds
    symptoms: frozenset[tuple[str, str]] = frozenset()  # (service key, symptom name)
    services: frozenset[str] = frozenset()  # every service seen

    def to_dict(self) -> dict[str, Any]:
        return {
            "counter_rates": dict(self.counter_rates),
            "retrans_share": self.retrans_share,
            "rtt": dict(self.rtt),
            "symptoms": sorted([k, s] for k, s in self.symptoms),
            "services": sorted(self.services),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signals:
        share = d.get("retrans_share")
        return cls(
            {str(k): float(v) for k, v in d.get("counter_rates", {}).items()},
            None if share is None else float(share),
            {str(k): float(v) for k, v in d.get("rtt", {}).items()},
            frozenset((str(k), str(s)) for k, s in d.get("symptoms", ())),
            frozenset(str(k) for k in d.get("services", ())),
        )


NAMESPACE = "(namespace)"  # the key of symptoms observe could not blame on one service


def counter_rates(deltas: Mapping[str, int], seconds: float, names: Iterable[str]) -> dict[str, float]:
    """Events per second of each counter in ``names`` from its delta over ``seconds`` (0 where absent)."""
    if seconds <= 0:
        return {n: 0.0 for n in names}
    return {n: max(0, deltas.get(n, 0)) / seconds for n in names}


def retrans_share(deltas: Mapping[str, int]) -> float | None:
    """Retransmitted / sent TCP segments over an interval; None when too little was sent to tell."""
    sent = deltas.get("Tcp.OutSegs", 0)
    if sent < _MIN_SEGMENTS:
        return None
    return max(0, deltas.get("Tcp.RetransSegs", 0)) / sent


def signals(
    deltas: Mapping[str, int],
    seconds: float,
    names: Iterable[str],
    rtt: Mapping[str, float],
    symptoms: Iterable[tuple[str, str]],
    services: Iterable[str] = (),
) -> Signals:
    """The guard's view of one observation interval (counter deltas over ``seconds``)."""
    symptoms = frozenset(symptoms)
    seen = frozenset(services) | frozenset(rtt) | frozenset(k for k, _ in symptoms)
    return Signals(counter_rates(deltas, seconds, names), retrans_share(deltas), dict(rtt), symptoms, seen)


def combine(samples: Iterable[Signals]) -> Signals:
    """The most lenient baseline of several intervals: the highest rate, share and rtt seen and every
    symptom seen (so ordinary fluctuation before an apply is not taken for a regression after it)."""
    items = list(samples)
    if not items:
        return Signals()
    rates: dict[str, float] = {}
    rtt: dict[str, float] = {}
    for s in items:
        for k, v in s.counter_rates.items():
            rates[k] = max(rates.get(k, 0.0), v)
        for k, v in s.rtt.items():
            rtt[k] = max(rtt.get(k, 0.0), v)
    shares = [s.retrans_share for s in items if s.retrans_share is not None]
    return Signals(
        rates,
        max(shares) if shares else None,
        rtt,
        frozenset().union(*(s.symptoms for s in items)),
        frozenset().union(*(s.services for s in items)),
    )


def judge(baseline: Signals, current: Signals, cfg: GuardConfig) -> list[str]:
    """Why ``current`` is a regression against ``baseline`` (empty list: it is not)."""
    reasons: list[str] = []
    if cfg.new_symptoms:
        known = baseline.services | {NAMESPACE}
        for key, name in sorted(current.symptoms - baseline.symptoms):
            if key in known:
                reasons.append(f"new symptom {name} on {key}")
    for name in cfg.counters:
        b = baseline.counter_rates.get(name, 0.0)
        n = current.counter_rates.get(name, 0.0)
        if n - b > cfg.counter_floor and n > b * (1.0 + cfg.max_counter_increase):
            reasons.append(f"{name} {b:.3g}/s -> {n:.3g}/s")
    if (
        baseline.retrans_share is not None
        and current.retrans_share is not None
        and current.retrans_share - baseline.retrans_share > cfg.max_retrans_increase
    ):
        reasons.append(f"retransmitted share {baseline.retrans_share:.2%} -> {current.retrans_share:.2%}")
    for key in sorted(baseline.rtt.keys() & current.rtt.keys()):
        b, n = baseline.rtt[key], current.rtt[key]
        if n - b > cfg.rtt_floor and n > b * (1.0 + cfg.max_rtt_increase):
            reasons.append(f"rtt of {key} {b * 1e3:.3g} ms -> {n * 1e3:.3g} ms")
    return reasons


class Phase(Enum):
    WATCHING = "watching"
    PASSED = "passed"
    REGRESSED = "regressed"


@dataclass
class GuardWatch:
    """One verification window after an apply (persisted, so a restarted daemon keeps watching)."""

    apply_id: str
    profile: str
    started: float  # wall-clock seconds
    deadline: float
    baseline: Signals
    samples: int = 0

    def step(self, current: Signals | None, now: float, cfg: GuardConfig) -> tuple[Phase, list[str]]:
        """Judge one sample (None: no usable sample this time) taken at ``now``."""
        if current is not None:
            self.samples += 1
            reasons = judge(self.baseline, current, cfg)
            if reasons:
                return Phase.REGRESSED, reasons
        if now >= self.deadline and self.samples > 0:
            return Phase.PASSED, []
        return Phase.WATCHING, []

    def to_dict(self) -> dict[str, Any]:
        return {
            "apply_id": self.apply_id,
            "profile": self.profile,
            "started": self.started,
            "deadline": self.deadline,
            "baseline": self.baseline.to_dict(),
            "samples": self.samples,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GuardWatch:
        return cls(
            str(d["apply_id"]),
            str(d["profile"]),
            float(d["started"]),
            float(d["deadline"]),
            Signals.from_dict(d.get("baseline", {})),
            int(d.get("samples", 0)),
        )
