"""What the daemon decides from what it sees: pure functions over plain data, no I/O.

- :func:`track` folds one observation into the per-service records and says which services changed
  enough to be searched (new service, changed class, moved path, new symptom);
- :class:`SearchQueue` holds the searches waiting to run: one per service, first come first served,
  at most one running, and never a service searched again before ``min_interval`` has passed.

Times are wall-clock seconds (``time.time()``) so that the minimum interval holds across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from tuner.daemon.config import ObserveConfig, ServiceSelection

__all__ = [
    "CHANGE_AGREE",
    "Observed",
    "QueuedSearch",
    "SearchQueue",
    "ServiceRecord",
    "Signature",
    "Tracked",
    "Trigger",
    "TriggerReason",
    "compare",
    "prune",
    "track",
]

# A class change or a path move is acted on only after this many consecutive observations (at least
# ``observe.settle``) agree on it: a service near a class boundary (a curl loop seen once as connection
# churn, once as long-lived idle) or a noisy path estimate must not re-queue its search every cycle.
CHANGE_AGREE = 3
_LASTING = frozenset({"class changed", "path moved"})


@dataclass(frozen=True)
class Signature:
    """A service as the daemon compares it between observations."""

    key: str
    service_class: str
    rtt: float  # seconds
    rate_bps: float | None
    loss: float
    symptoms: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "class": self.service_class,
            "rtt": self.rtt,
            "rate_bps": self.rate_bps,
            "loss": self.loss,
            "symptoms": sorted(self.symptoms),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signature:
        rate = d.get("rate_bps")
        return cls(
            str(d["key"]),
            str(d["class"]),
            float(d.get("rtt", 0.0)),
            None if rate is None else float(rate),
            float(d.get("loss", 0.0)),
            frozenset(str(s) for s in d.get("symptoms", ())),
        )


class TriggerReason(Enum):
    NEW_SERVICE = "new service"
    CLASS_CHANGED = "class changed"
    PATH_MOVED = "path moved"
    NEW_SYMPTOM = "new symptom"


@dataclass(frozen=True)
class Trigger:
    key: str
    reason: TriggerReason
    detail: str

    def describe(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


def _moved(before: float, after: float, fraction: float, floor: float = 0.0) -> bool:
    """``after`` differs from ``before`` by more than ``fraction`` of it and by more than ``floor``."""
    change = abs(after - before)
    return change > floor and change > fraction * abs(before)


def compare(reference: Signature | None, current: Signature, cfg: ObserveConfig) -> list[Trigger]:
    """Why ``current`` differs enough from the ``reference`` it was last judged by (empty: it does not)."""
    key = current.key
    if reference is None:
        detail = current.service_class
        if current.symptoms:
            detail += f" with {', '.join(sorted(current.symptoms))}"
        return [Trigger(key, TriggerReason.NEW_SERVICE, detail)]
    out: list[Trigger] = []
    if current.service_class != reference.service_class:
        out.append(
            Trigger(key, TriggerReason.CLASS_CHANGED, f"{reference.service_class} -> {current.service_class}")
        )
    moved = []
    if _moved(reference.rtt, current.rtt, cfg.rtt_change, cfg.rtt_floor):
        moved.append(f"rtt {reference.rtt * 1e3:.3g} -> {current.rtt * 1e3:.3g} ms")
    if (reference.rate_bps is None) != (current.rate_bps is None):
        moved.append("rate estimate appeared" if current.rate_bps is not None else "rate estimate vanished")
    elif (
        reference.rate_bps is not None
        and current.rate_bps is not None
        and _moved(reference.rate_bps, current.rate_bps, cfg.rate_change)
    ):
        moved.append(f"rate {reference.rate_bps / 1e6:.3g} -> {current.rate_bps / 1e6:.3g} Mbit/s")
    if abs(current.loss - reference.loss) > cfg.loss_change:
        moved.append(f"loss {reference.loss * 100:.2g}% -> {current.loss * 100:.2g}%")
    if moved:
        out.append(Trigger(key, TriggerReason.PATH_MOVED, "; ".join(moved)))
    new = current.symptoms - reference.symptoms
    if new:
        out.append(Trigger(key, TriggerReason.NEW_SYMPTOM, ", ".join(sorted(new))))
    return out


@dataclass(frozen=True)
class ServiceRecord:
    """What the daemon remembers of one service (persisted in the state file)."""

    key: str
    current: Signature
    reference: Signature | None = None  # the signature it was last judged by; None until it settled
    first_seen: float = 0.0
    last_seen: float = 0.0
    streak: int = 0  # consecutive observations it was present in
    process: str = ""
    workload: Mapping[str, Any] | None = None  # Workload.to_dict() to search
    path: Mapping[str, Any] | None = None  # Path.to_dict() to search
    last_search: float | None = None
    profile: str | None = None  # the newest profile written for it
    pending: Signature | None = None  # a class/path change seen but not yet agreed on
    pending_count: int = 0  # consecutive observations that agreed with ``pending``

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "current": self.current.to_dict(),
            "reference": self.reference.to_dict() if self.reference else None,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "streak": self.streak,
            "process": self.process,
            "workload": dict(self.workload) if self.workload else None,
            "path": dict(self.path) if self.path else None,
            "last_search": self.last_search,
            "profile": self.profile,
            "pending": self.pending.to_dict() if self.pending else None,
            "pending_count": self.pending_count,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServiceRecord:
        ref = d.get("reference")
        return cls(
            key=str(d["key"]),
            current=Signature.from_dict(d["current"]),
            reference=Signature.from_dict(ref) if ref else None,
            first_seen=float(d.get("first_seen", 0.0)),
            last_seen=float(d.get("last_seen", 0.0)),
            streak=int(d.get("streak", 0)),
            process=str(d.get("process", "")),
            workload=d.get("workload"),
            path=d.get("path"),
            last_search=None if d.get("last_search") is None else float(d["last_search"]),
            profile=d.get("profile"),
            pending=Signature.from_dict(d["pending"]) if d.get("pending") else None,
            pending_count=int(d.get("pending_count", 0)),
        )


@dataclass(frozen=True)
class Observed:
    """One service in one observation, as :func:`track` needs it."""

    signature: Signature
    process: str = ""
    workload: Mapping[str, Any] | None = None
    path: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Tracked:
    records: dict[str, ServiceRecord]
    triggers: list[Trigger]  # every change found
    to_search: list[Trigger]  # the subset that should start a search (first trigger per service)


def track(
    records: Mapping[str, ServiceRecord], observed: Iterable[Observed], now: float, cfg: ObserveConfig
) -> Tracked:
    """Fold one observation into ``records``.

    A service is judged once it was present in ``cfg.settle`` consecutive observations. A new symptom
    is acted on at once; a class change or a path move only once :data:`CHANGE_AGREE` (at least
    ``cfg.settle``) consecutive observations agree on the new class and path (hysteresis). A judged
    change moves its reference (so it fires once, not every tick); it leads to a search when the
    service can be searched (it has a workload) and either every service is searched or it shows a
    symptom.
    """
    out: dict[str, ServiceRecord] = {}
    triggers: list[Trigger] = []
    to_search: list[Trigger] = []
    seen = set()
    for item in observed:
        sig = item.signature
        if sig.key in seen:
            continue
        seen.add(sig.key)
        old = records.get(sig.key)
        streak = (old.streak + 1) if old is not None and old.streak > 0 else 1
        rec = ServiceRecord(
            key=sig.key,
            current=sig,
            reference=old.reference if old else None,
            first_seen=old.first_seen if old else now,
            last_seen=now,
            streak=streak,
            process=item.process or (old.process if old else ""),
            workload=item.workload if item.workload is not None else (old.workload if old else None),
            path=item.path if item.path is not None else (old.path if old else None),
            last_search=old.last_search if old else None,
            profile=old.profile if old else None,
            pending=old.pending if old else None,
            pending_count=old.pending_count if old else 0,
        )
        if streak >= cfg.settle:
            found, rec = _hysteresis(rec, sig, cfg)
            if found:
                triggers.extend(found)
                wanted = cfg.services is ServiceSelection.ALL or bool(sig.symptoms)
                if wanted and rec.workload is not None:
                    to_search.append(found[0])
        out[sig.key] = rec
    for key, old in records.items():
        if key not in seen:
            out[key] = replace(old, streak=0)
    return Tracked(out, triggers, to_search)


def _hysteresis(
    rec: ServiceRecord, sig: Signature, cfg: ObserveConfig
) -> tuple[list[Trigger], ServiceRecord]:
    """The changes to act on now, and the record with its reference and pending change updated."""
    found = compare(rec.reference, sig, cfg)
    if rec.reference is None:
        return found, replace(rec, reference=sig, pending=None, pending_count=0)
    reference = rec.reference  # kept by every replace below until a change is agreed on
    lasting = [t for t in found if t.reason.value in _LASTING]
    symptoms = [t for t in found if t.reason.value not in _LASTING]
    if not lasting:
        rec = replace(rec, pending=None, pending_count=0)
    else:
        agrees = rec.pending is not None and not any(
            t.reason.value in _LASTING for t in compare(rec.pending, sig, cfg)
        )
        count = rec.pending_count + 1 if agrees else 1
        if count >= max(CHANGE_AGREE, cfg.settle):
            return found, replace(rec, reference=sig, pending=None, pending_count=0)
        rec = replace(rec, pending=sig if not agrees else rec.pending, pending_count=count)
    if symptoms:  # act on the new symptom; keep the class and path judged until a change is agreed on
        rec = replace(rec, reference=replace(reference, symptoms=reference.symptoms | sig.symptoms))
    return symptoms, rec


def prune(
    records: Mapping[str, ServiceRecord], now: float, *, max_age: float, max_count: int
) -> dict[str, ServiceRecord]:
    """Forget services unseen for ``max_age`` seconds (unless a profile was written for them), then keep
    at most ``max_count``, the most recently seen first (a host talking to many remotes stays bounded)."""
    kept = {k: r for k, r in records.items() if r.streak > 0 or r.profile or now - r.last_seen <= max_age}
    if len(kept) > max_count:
        newest = sorted(kept.values(), key=lambda r: (r.streak > 0, r.last_seen), reverse=True)[:max_count]
        kept = {r.key: r for r in newest}
    return kept


@dataclass(frozen=True)
class QueuedSearch:
    key: str
    reason: str
    queued_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason, "queued_at": self.queued_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QueuedSearch:
        return cls(str(d["key"]), str(d.get("reason", "")), float(d.get("queued_at", 0.0)))


@dataclass
class SearchQueue:
    """Searches waiting to run, at most one per service, in the order they were asked for."""

    pending: list[QueuedSearch] = field(default_factory=list)

    def offer(self, key: str, reason: str, now: float) -> bool:
        """Queue a search of ``key``; False if one is already waiting (it keeps its place)."""
        if any(q.key == key for q in self.pending):
            return False
        self.pending.append(QueuedSearch(key, reason, now))
        return True

    def discard(self, key: str) -> None:
        self.pending = [q for q in self.pending if q.key != key]

    def next_ready(
        self, now: float, last_search: Mapping[str, float | None], min_interval: float, *, busy: bool
    ) -> QueuedSearch | None:
        """The first waiting search allowed to start now, removed from the queue; None if none is.

        Nothing starts while another search runs (``busy``); a service searched less than
        ``min_interval`` ago waits, without blocking the services behind it.
        """
        if busy:
            return None
        for q in self.pending:
            last = last_search.get(q.key)
            if last is None or now - last >= min_interval:
                self.pending.remove(q)
                return q
        return None

    def wait_time(
        self, now: float, last_search: Mapping[str, float | None], min_interval: float
    ) -> float | None:
        """Seconds until the earliest waiting search becomes allowed (None: nothing waits)."""
        waits = []
        for q in self.pending:
            last = last_search.get(q.key)
            waits.append(0.0 if last is None else max(0.0, last + min_interval - now))
        return min(waits) if waits else None

    def to_list(self) -> list[dict[str, Any]]:
        return [q.to_dict() for q in self.pending]

    @classmethod
    def from_list(cls, items: Iterable[Mapping[str, Any]]) -> SearchQueue:
        return cls([QueuedSearch.from_dict(d) for d in items])
