"""Guarded apply (apply mode): apply a waiting profile, watch the service, roll back on regression.

:class:`GuardedApply` is what the loop calls at each observation (:meth:`GuardedApply.step`), when the
daemon is disabled (:meth:`GuardedApply.abandon`) and when it stops (:meth:`GuardedApply.rollback_all`).
Which knobs of a profile it writes is :func:`select_knobs` (pure); whether the signals after an apply
regressed is :mod:`tuner.daemon.regression`. Every write goes through tuner.apply's Applier
(:class:`tuner.daemon.access.KnobAccess`), journaled per apply so that a rollback undoes exactly that
apply; knobs someone else changed since are left as they are (:class:`tuner.daemon.manual.ManualKnobs`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuner.daemon.access import KnobAccess
from tuner.daemon.admin import sysctl_sources
from tuner.daemon.config import DaemonConfig, Mode
from tuner.daemon.control import ControlDir
from tuner.daemon.manual import ManualKnobs
from tuner.daemon.regression import GuardWatch, Phase, Signals, combine, signals
from tuner.daemon.sample import Sample
from tuner.daemon.state import (
    PROFILES_DIR,
    AppliedRecord,
    DaemonState,
    OwnedKnob,
    PendingApply,
    ProfileRecord,
)
from tuner.errors import TunerError
from tuner.knobs import CATALOGUE
from tuner.logs import get_logger
from tuner.trusted import ensure_dir

__all__ = ["APPLIED_DIR", "GuardedApply", "Selection", "select_knobs"]

log = get_logger(__name__)

APPLIED_DIR = "applied"  # the Applier's journal of each guarded apply
_BASELINE_INTERVALS = 3  # the observations before an apply that make its baseline


@dataclass(frozen=True)
class Selection:
    apply: dict[str, Any]  # knob -> value to write
    skipped: dict[str, str]  # knob -> why it is left alone


def select_knobs(
    sysctls: Mapping[str, Any],
    *,
    allow: Iterable[str],
    manual: Iterable[str],
    admin_files: Mapping[str, str],
    held: Mapping[str, str],
    in_netns: bool,
) -> Selection:
    """Split a profile's ``[sysctl]`` into what the daemon writes and what it leaves, with reasons.

    ``admin_files``: knob -> the sysctl.d line that sets it; ``held``: knob -> the profile of another
    service that the daemon applied it for; ``in_netns``: the target is a network namespace, where
    host-only knobs are read-only.
    """
    allow, manual = set(allow), set(manual)
    out: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for knob, value in sysctls.items():
        entry = CATALOGUE.get(knob)
        if entry is None or not entry.is_sysctl:
            skipped[knob] = "not a sysctl"
        elif knob not in allow:
            skipped[knob] = "not in [apply] allow"
        elif knob in manual:
            skipped[knob] = "manually managed"
        elif knob in admin_files:
            skipped[knob] = f"set by the administrator ({admin_files[knob]})"
        elif knob in held:
            skipped[knob] = f"held by profile {held[knob]}"
        elif in_netns and entry.host_only:
            skipped[knob] = "host-only knob; not writable in a network namespace"
        else:
            out[knob] = value
    return Selection(out, skipped)


class GuardedApply:
    """The waiting profiles (``state.pending``) applied one at a time, each watched for its guard window
    (``state.guard``) and kept or rolled back (``state.applied``, ``state.owned``, ``state.rejected``)."""

    def __init__(
        self,
        state: DaemonState,
        target: KnobAccess,
        manual: ManualKnobs,
        *,
        state_dir: Path,
        config: Callable[[], DaemonConfig],
        clock: Callable[[], float],
    ) -> None:
        self.state = state
        self.target = target
        self.manual = manual
        self.profiles_dir = state_dir / PROFILES_DIR
        self.journals = state_dir / APPLIED_DIR
        self.config = config
        self.clock = clock
        self._recent: list[Signals] = []  # the last observations: the baseline of the next apply

    def step(self, sample: Sample) -> None:
        """One observation: judge the apply being watched, else apply the next waiting profile with the
        last few observations as its baseline."""
        current = signals(
            sample.counters,
            sample.duration,
            self.config().guard.counters,
            sample.rtt,
            sample.symptoms,
            [o.signature.key for o in sample.services],
        )
        self._recent = ([*self._recent, current])[-_BASELINE_INTERVALS:]
        if self.state.guard is not None:
            self._judge(current)
        if self.config().mode is Mode.APPLY and self.state.guard is None and self.state.pending:
            self._apply_next(self._recent)

    def forget_baseline(self) -> None:
        """Observations stopped (the daemon was disabled): a baseline from before the pause would not
        describe the host now."""
        self._recent = []

    def take_staged(self, control: ControlDir) -> None:
        """Queue the profiles staged with `tuner daemon --stage` (apply mode; in recommend mode they wait
        in the inbox, and that is reported)."""
        staged = control.staged()
        if staged and self.config().mode is not Mode.APPLY:
            if not any("staged profiles wait" in p for p in self.state.problems[-3:]):
                self.state.note_problem(
                    f"{len(staged)} staged profiles wait in {control.inbox}: mode is recommend"
                )
            return
        for name in staged:
            dest = str(control.accept(name, ensure_dir(self.profiles_dir)))
            self.state.add_profile(
                ProfileRecord(Path(dest).stem, dest, None, self.clock(), "staged with tuner daemon --stage")
            )
            self.state.queue_apply(PendingApply(dest, None, "staged"))
            log.info("profile.staged", file=dest)

    def abandon(self, why: str) -> None:
        """Roll back the apply being watched: it can no longer be watched, so it is not kept on trust."""
        if self.state.guard is None:
            return
        record = self._record(self.state.guard.apply_id)
        self.state.guard = None
        if record is not None:
            self._rollback(record, "rolled back", [why])

    def rollback_all(self, outcome: str) -> None:
        for record in reversed(self.state.applied):
            if record.outcome in ("guarding", "kept") and record.journal:
                self._rollback(record, outcome, [])
        self.state.guard = None

    def _apply_next(self, recent: Sequence[Signals]) -> None:
        if not recent:
            return  # no baseline yet: wait for one more observation
        cfg = self.config()
        item = self.state.pending.pop(0)
        file = item.file
        if file in self.state.rejected:
            log.info("apply.skipped", file=file, reason=self.state.rejected[file])
            return
        apply_id = (
            time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
            + f"-{os.getpid()}-{len(self.state.applied)}"
        )
        record = AppliedRecord(
            apply_id=apply_id,
            profile=Path(file).stem,
            file=file,
            service=item.service,
            at=self.clock(),
            changes={},
            skipped={},
            outcome="failed",
        )
        try:
            profile = self.target.load(Path(file))
            sysctls = dict(profile.sysctl)
            admin = {}
            for knob in sysctls:
                sources = sysctl_sources(knob)
                if sources:
                    admin[knob] = sources[-1].describe()
            held = {k: o.profile for k, o in self.state.owned.items() if o.profile != profile.name}
            sel = select_knobs(
                sysctls,
                allow=cfg.apply.allow,
                manual=self.state.manual,
                admin_files=admin,
                held=held,
                in_netns=self.target.in_netns,
            )
            record = replace(record, profile=profile.name, skipped=dict(sel.skipped))
            to_apply = dict(sel.apply)
            # re-read before writing: a value the daemon set that changed since is the administrator's now
            for knob in self.manual.take_over(
                {k: self.state.owned[k].value for k in to_apply if k in self.state.owned}
            ):
                to_apply.pop(knob)
                record.skipped[knob] = "manually managed"
            if not to_apply:
                record.outcome = "nothing to apply"
                log.info("apply.nothing", profile=profile.name, skipped=record.skipped)
                self.state.applied.append(record)
                return
            journal = self.journals / apply_id
            changes = self.target.apply(
                profile, to_apply, journal, reason=f"tuner daemon: guarded apply of {file}"
            )
        except TunerError as exc:
            log.error("apply.failed", file=file, error=exc.message, hint=exc.hint)
            self.state.note_problem(f"apply of {file} failed: {exc.message}")
            record.reasons.append(exc.message)
            self.state.applied.append(record)
            self.state.rejected[file] = f"apply failed: {exc.message}"
            return
        now = self.clock()
        record.journal = str(journal)
        record.changes = {c.knob: {"old": c.old, "new": c.new} for c in changes}
        if not changes:
            record.outcome = "already in place"
            self.state.applied.append(record)
            log.info("apply.unchanged", profile=profile.name)
            return
        self.state.stats.knobs_applied += len(changes)
        for c in changes:
            self.state.owned[c.knob] = OwnedKnob(c.new, apply_id, profile.name, now)
        record.outcome = "guarding"
        self.state.applied.append(record)
        self.state.guard = GuardWatch(apply_id, profile.name, now, now + cfg.guard.window, combine(recent))
        log.info(
            "guard.started",
            profile=profile.name,
            apply_id=apply_id,
            window=cfg.guard.window,
            knobs=[c.knob for c in changes],
        )  # each write was logged by the Applier (knob.changed)

    def _judge(self, current: Signals) -> None:
        watch = self.state.guard
        assert watch is not None
        phase, reasons = watch.step(current, self.clock(), self.config().guard)
        if phase is Phase.WATCHING:
            return
        record = self._record(watch.apply_id)
        self.state.guard = None
        if phase is Phase.PASSED:
            if record is not None:
                record.outcome, record.ended = "kept", self.clock()
            log.info("guard.passed", profile=watch.profile, apply_id=watch.apply_id, samples=watch.samples)
            return
        log.warning("guard.regression", profile=watch.profile, apply_id=watch.apply_id, reasons=reasons)
        if record is not None:
            self._rollback(record, "rolled back", reasons)
            self.state.rejected[record.file] = "rolled back by the guard: " + "; ".join(reasons)

    def _rollback(self, record: AppliedRecord, outcome: str, reasons: list[str]) -> None:
        """Restore what one apply changed, except knobs someone else changed since (now manual)."""
        try:
            self.manual.take_over(
                {k: o.value for k, o in self.state.owned.items() if o.apply_id == record.apply_id}
            )
            still_mine = [k for k, o in self.state.owned.items() if o.apply_id == record.apply_id]
            restored = self.target.rollback(
                Path(record.journal), only=still_mine, reason=f"tuner daemon: {outcome} ({record.profile})"
            )
        except TunerError as exc:
            log.error("rollback.failed", apply_id=record.apply_id, error=exc.message, hint=exc.hint)
            self.state.note_problem(f"rollback of {record.profile} failed: {exc.message}")
            record.reasons = [*list(reasons), f"rollback failed: {exc.message}"]
            return
        log.info(
            "apply.undone",
            apply_id=record.apply_id,
            profile=record.profile,
            outcome=outcome,
            restored=[c.knob for c in restored],
        )
        for knob in still_mine:
            del self.state.owned[knob]
        left = sorted(set(record.changes) - set(still_mine))
        notes = [f"left as the administrator set them: {', '.join(left)}"] if left else []
        record.outcome, record.reasons, record.ended = outcome, list(reasons) + notes, self.clock()
        self.state.stats.rollbacks[outcome] = self.state.stats.rollbacks.get(outcome, 0) + 1

    def _record(self, apply_id: str) -> AppliedRecord | None:
        return next((a for a in reversed(self.state.applied) if a.apply_id == apply_id), None)
