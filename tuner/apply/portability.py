"""Portability: was a profile measured against a baseline like this target's?

A profile's gain was measured against the baseline recorded in ``[evidence.baseline.settings]`` (see
:mod:`tuner.probe.target`). Where the target's live value of a knob the profile leaves alone differs
from that baseline (say bbr there, cubic here), the gain may not hold: ``tuner apply`` and ``verify``
warn, and keep their exit codes. Pure reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuner.apply.plan import show_value
from tuner.apply.target import Target, run_in_target
from tuner.errors import KnobError
from tuner.knobs import CATALOGUE, Scope, SysctlTree, Value, json_value
from tuner.profiles import Profile

__all__ = ["BaselineDiff", "baseline_differences", "recorded_baseline", "target_baseline_differences"]


@dataclass(frozen=True)
class BaselineDiff:
    knob: str
    measured: Value  # the profile's baseline value (what its gain was measured against)
    live: Value  # the target's live value
    where: str  # "this host", "network namespace NS"

    def message(self) -> str:
        return (
            f"measured with {self.knob}={show_value(self.measured)}, {self.where} has "
            f"{show_value(self.live)}: its gain may not hold here; re-run tuner recommend on {self.where}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "knob": self.knob,
            "measured": json_value(self.measured),
            "live": json_value(self.live),
            "message": self.message(),
        }


def recorded_baseline(profile: Profile) -> dict[str, Value]:
    """The sysctls of ``[evidence.baseline.settings]``, canonical; unknown knobs and "unset" are skipped
    (a profile from an older tuner has none: nothing to compare)."""
    baseline = profile.evidence.get("baseline")
    settings = baseline.get("settings") if isinstance(baseline, Mapping) else None
    if not isinstance(settings, Mapping):
        return {}
    out: dict[str, Value] = {}
    for name, value in settings.items():
        knob = CATALOGUE.get(name)
        if knob is None or not knob.is_sysctl or value == "unset":
            continue
        try:
            out[name] = knob.validate(tuple(value) if isinstance(value, list) else value)
        except KnobError:
            continue
    return out


def baseline_differences(
    profile: Profile, tree: SysctlTree, scopes: Sequence[Scope], where: str
) -> list[BaselineDiff]:
    """Knobs of ``scopes`` the profile leaves alone whose live value (here) differs from its baseline."""
    out = []
    for name, measured in sorted(recorded_baseline(profile).items()):
        knob = CATALOGUE[name]
        if knob.scope not in scopes or name in profile.sysctl:
            continue
        live = tree.read(knob)
        if live is not None and live != measured:
            out.append(BaselineDiff(name, measured, live, where))
    return out


def target_baseline_differences(profile: Profile, target: Target) -> list[BaselineDiff]:
    """:func:`baseline_differences` for ``target``: per-namespace knobs read in it, host-only ones on the host."""
    if target.is_host:
        return baseline_differences(profile, SysctlTree(), (Scope.NETNS, Scope.HOST), "this host")
    where = target.describe()
    return run_in_target(
        target, baseline_differences, profile, SysctlTree(), (Scope.NETNS,), where
    ) + baseline_differences(profile, SysctlTree(), (Scope.HOST,), "this host")
