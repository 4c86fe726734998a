"""The plan: a pure diff between a profile and the live sysctls of a target.

Computing a plan only reads. It lists what would change (knob, live value, new value), what already
matches, and what does not apply here: knobs this kernel lacks, and host-wide knobs when the target is
a network namespace (they cannot be written there; the plan says so rather than failing). Socket
settings are carried along for display: the application sets them, tuner never applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner.apply.target import HOST, Target
from tuner.errors import EnvironmentProblem
from tuner.knobs import CATALOGUE, SysctlTree, Value, json_value
from tuner.profiles import Profile
from tuner.units import format_value

__all__ = [
    "ABSENT_REASON",
    "HOST_ONLY_REASON",
    "Change",
    "NotApplicable",
    "Plan",
    "Setting",
    "make_plan",
    "read_live",
    "show_value",
]

HOST_ONLY_REASON = "host-wide setting, cannot be set inside a network namespace; apply it on the host"
ABSENT_REASON = "not available on this kernel"


def show_value(value: Value | None) -> str:
    """A value in the tables and logs of apply: :func:`tuner.units.format_value`, ``-`` for none."""
    return format_value(value, unset="-")


@dataclass(frozen=True)
class Change:
    knob: str
    old: Value | None  # None: the knob was absent (a restore found it gone)
    new: Value

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "old": json_value(self.old), "new": json_value(self.new)}


@dataclass(frozen=True)
class Setting:
    knob: str
    value: Value

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "value": json_value(self.value)}


@dataclass(frozen=True)
class NotApplicable:
    knob: str
    value: Value
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "value": json_value(self.value), "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    profile: str
    target: Target
    changes: tuple[Change, ...]
    unchanged: tuple[Setting, ...]
    not_applicable: tuple[NotApplicable, ...]
    socket: Mapping[str, Value] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.changes

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "target": self.target.netns or "host",
            "changes": [c.to_dict() for c in self.changes],
            "unchanged": [s.to_dict() for s in self.unchanged],
            "not_applicable": [n.to_dict() for n in self.not_applicable],
            "socket": {k: json_value(v) for k, v in self.socket.items()},
        }


def read_live(tree: SysctlTree, name: str) -> Value | None:
    """The live value of a catalogue sysctl, ``None`` where absent; unreadable is an environment problem."""
    knob = CATALOGUE[name]
    try:
        return tree.read(knob)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot read {name}: {exc.strerror}", hint="run as root, or check that /proc/sys is mounted"
        ) from None
    except ValueError as exc:
        raise EnvironmentProblem(f"cannot understand the live value of {name}: {exc}") from None


def make_plan(profile: Profile, tree: SysctlTree, *, target: Target = HOST) -> Plan:
    """What applying ``profile`` to ``target`` (whose sysctls ``tree`` shows) would change. Only reads."""
    changes: list[Change] = []
    unchanged: list[Setting] = []
    not_applicable: list[NotApplicable] = []
    sysctl = profile.sysctl
    for name in sysctl.in_catalogue_order():
        new = sysctl[name]
        if CATALOGUE[name].host_only and not target.is_host:
            not_applicable.append(NotApplicable(name, new, HOST_ONLY_REASON))
            continue
        live = read_live(tree, name)
        if live is None:
            not_applicable.append(NotApplicable(name, new, ABSENT_REASON))
        elif live == new:
            unchanged.append(Setting(name, new))
        else:
            changes.append(Change(name, live, new))
    return Plan(
        profile.name, target, tuple(changes), tuple(unchanged), tuple(not_applicable), dict(profile.socket)
    )
