"""The Profile: the deliverable of a search, as plain validated data.

A Profile holds canonical values only (see :mod:`tuner.knobs.domains`): constructing one validates
every setting against the catalogue, the section it belongs in, and the coupled constraints, so a
Profile in memory can always be saved, rendered and applied.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from tuner import __version__
from tuner.errors import InputError, KnobError
from tuner.knobs import Assignment, get_knob
from tuner.workload import NetworkPath, Workload

__all__ = ["SCHEMA_VERSION", "Profile", "check_name", "profile_name_for"]

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InputError(
            f"profile name {name!r} is not valid",
            hint="1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


_WRONG_SECTION = {
    "sysctl": ("is a socket setting, not a sysctl", "put it in [socket]"),
    "socket": ("is a sysctl, not a socket setting", "put it in [sysctl]"),
}


def _section(section: str, settings: Mapping[str, object]) -> Assignment:
    """``settings`` as the ``section`` of a profile: each knob belongs there, each value is canonical."""
    for name in settings:
        if get_knob(name).section != section:
            message, hint = _WRONG_SECTION[section]
            raise KnobError(name, message, hint=hint)
    return Assignment(settings)


def _toml_data(value: Any, where: str) -> Any:
    """``value`` as plain TOML data (tuples become arrays); refuses what TOML cannot hold (None, objects)."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"{where}: key {k!r} is not a string", hint="evidence is TOML data")
            out[k] = _toml_data(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_toml_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (str, int, float, bool, datetime, date, time)):
        return value
    raise InputError(
        f"{where}: {type(value).__name__} {value!r} cannot be stored in TOML",
        hint="evidence holds tables, arrays, strings, numbers, booleans and dates only",
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True, kw_only=True)
class Profile:
    """Settings for a workload, with where they came from. ``evidence`` is free-form TOML-able data."""

    name: str
    description: str = ""
    created: datetime = field(default_factory=_now)
    tuner_version: str = __version__
    kernel: str = field(default_factory=platform.release)
    workload: Workload | None = None
    path: NetworkPath | None = None
    sysctl: Assignment = field(default_factory=Assignment)  # a plain mapping is validated into one
    socket: Assignment = field(default_factory=Assignment)
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.created, datetime):
            raise InputError(f"profile created must be a datetime, got {self.created!r}")
        for attr in ("description", "tuner_version", "kernel"):
            if not isinstance(getattr(self, attr), str):
                raise InputError(f"profile {attr} must be a string, got {getattr(self, attr)!r}")
        if not isinstance(self.evidence, Mapping):
            raise InputError(f"profile evidence must be a table, got {type(self.evidence).__name__}")
        sysctl = _section("sysctl", self.sysctl)
        socket = _section("socket", self.socket)
        (sysctl | socket).check()
        object.__setattr__(self, "sysctl", sysctl)
        object.__setattr__(self, "socket", socket)
        object.__setattr__(self, "evidence", _toml_data(self.evidence, "evidence"))

    @property
    def assignment(self) -> Assignment:
        """Every setting of the profile, kernel and socket, as one assignment."""
        return self.sysctl | self.socket

    @classmethod
    def from_assignment(cls, name: str, assignment: Mapping[str, object], **fields: Any) -> Profile:
        sysctl, socket = Assignment(assignment).sections()
        return cls(name=name, sysctl=sysctl, socket=socket, **fields)


def profile_name_for(service_key: str) -> str:
    """A profile name (letters, digits, '.', '_', '-') for a service key such as ``nginx:443``."""
    name = re.sub(r"[^A-Za-z0-9.]+", "-", service_key).strip("-.")
    return (name or "service")[:64]
