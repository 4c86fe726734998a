"""Verify: does a target's live state match a profile? Pure reading, per-key drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuner.apply.plan import make_plan
from tuner.apply.target import HOST, Target
from tuner.knobs import SysctlTree, Value, json_value
from tuner.profiles import Profile

__all__ = ["Drift", "verify"]


@dataclass(frozen=True)
class Drift:
    knob: str
    expected: Value
    live: Value | None

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "expected": json_value(self.expected), "live": json_value(self.live)}


def verify(profile: Profile, tree: SysctlTree, *, target: Target = HOST) -> list[Drift]:
    """Every applicable sysctl of ``profile`` whose live value differs. Knobs this kernel (or a namespace)
    lacks are not drift; :func:`make_plan` lists them as not applicable."""
    return [Drift(c.knob, c.new, c.old) for c in make_plan(profile, tree, target=target).changes]
