"""The daemon's reads and writes of sysctls, all through tuner.apply (the one writer).

Everything runs where the target's sysctls are live: in this process for the host, in a child inside
the namespace for ``--netns`` (:func:`tuner.apply.run_in_target`). Each guarded apply has its own
journal directory, so its rollback undoes exactly that apply and nothing an administrator applied.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from tuner.apply import Applier, Change, Journal, Plan, SetStep, Target, make_plan, rollback, run_in_target
from tuner.apply.plan import read_live
from tuner.knobs import Assignment, SysctlTree, Value
from tuner.profiles import Profile, load_profile

__all__ = ["KnobAccess"]


def _read(names: list[str]) -> dict[str, Value | None]:
    tree = SysctlTree()
    return {name: read_live(tree, name) for name in names}


def _apply(profile: Profile, journal: Path, target: Target, reason: str) -> list[Change]:
    tree = SysctlTree()
    plan = make_plan(profile, tree, target=target)
    return Applier(journal, tree, target=target).apply(plan, reason)


def _originals(journal: Path, target: Target) -> tuple[list[str], dict[str, Value]]:
    """The outstanding transactions of a journal and the value each knob had before the first of them."""
    with Journal(journal, target) as j:
        txns = [t for t in j.transactions() if t.outstanding]
    originals: dict[str, Value] = {}
    for txn in txns:
        for step in txn.steps:
            if isinstance(step, SetStep):
                originals.setdefault(step.knob, step.old)
    return [t.txn for t in txns], originals


def _rollback(journal: Path, target: Target, only: frozenset[str] | None, reason: str) -> list[Change]:
    tree = SysctlTree()
    txns, originals = _originals(journal, target)
    if only is None or originals.keys() <= only:
        return rollback(journal, tree, target=target, force=True)  # overrides were set aside by the caller
    # Some knob is not the daemon's any more (the administrator changed it): restore the others only.
    # The plan is built from the journal's originals and applied by the Applier (journaled in its own
    # directory), then the original transactions are closed as rolled back.
    changes = []
    for knob, old in originals.items():
        live = read_live(tree, knob)
        if knob in only and live is not None and live != old:
            changes.append(Change(knob, live, old))
    plan = Plan(f"rollback of {journal.name}", target, tuple(changes), (), ())
    done = Applier(journal / "partial-rollback", tree, target=target).apply(plan, reason) if changes else []
    with Journal(journal, target) as j:
        for txn in txns:
            j.close_txn(txn, "rolledback")
    return done


class KnobAccess:
    """Reads, guarded applies and rollbacks of one target (the host or a network namespace)."""

    def __init__(self, netns: str | None) -> None:
        self.target = Target(netns)

    @property
    def in_netns(self) -> bool:
        return not self.target.is_host

    def load(self, file: Path) -> Profile:
        """A profile to apply; on the host only from a file no one but root can change."""
        return load_profile(file, trusted_only=self.target.is_host, in_netns=self.in_netns)

    def read(self, names: Collection[str]) -> dict[str, Value | None]:
        return run_in_target(self.target, _read, list(names))

    def apply(
        self, profile: Profile, settings: Mapping[str, Value], journal: Path, *, reason: str
    ) -> list[Change]:
        """Apply ``settings`` (a subset of ``profile``'s sysctls) with the Applier, journaled in ``journal``."""
        subset = Profile(
            name=profile.name,
            description=profile.description,
            workload=profile.workload,
            path=profile.path,
            sysctl=Assignment(settings),
        )
        return run_in_target(self.target, _apply, subset, journal, self.target, reason)

    def rollback(
        self, journal: Path, *, only: Collection[str] | None = None, reason: str = "tuner daemon rollback"
    ) -> list[Change]:
        """Undo the apply journaled in ``journal``; with ``only``, restore just those knobs and leave
        the others as they are now (knobs that became the administrator's)."""
        if not (journal / f"{self.target.key}.journal").exists():
            return []
        return run_in_target(
            self.target, _rollback, journal, self.target, None if only is None else frozenset(only), reason
        )
