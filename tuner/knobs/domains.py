"""Typed value domains of knobs: what a knob accepts, how it is written to the kernel, how it is searched.

A domain is pure: it validates and converts values, nothing else. Canonical values are plain Python:
``int``, ``bool``, ``str`` or ``tuple[int, ...]``; in TOML a tuple is written as an array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tuner.errors import KnobError

__all__ = [
    "INT_MAX",
    "Algorithm",
    "Domain",
    "Flag",
    "IntChoice",
    "IntRange",
    "OrderedTuple",
    "Value",
    "as_int",
    "as_tuple",
]

INT_MAX = 2**31 - 1
Value = int | bool | str | tuple[int, ...]


def as_int(value: Value) -> int:
    """The number of an integer-valued knob (a flag counts as 0/1). Values are canonical, so a string or a
    tuple here is a programming error, not bad input: ``TypeError``."""
    if isinstance(value, (str, tuple)):
        raise TypeError(f"expected an integer value, got {value!r}")
    return int(value)


def as_tuple(value: Value) -> tuple[int, ...]:
    """The parts of a tuple-valued knob (``TypeError`` for any other value)."""
    if not isinstance(value, tuple):
        raise TypeError(f"expected a tuple value, got {value!r}")
    return value


@runtime_checkable
class Domain(Protocol):
    def validate(self, knob: str, value: object) -> Value: ...
    def to_kernel(self, value: Value) -> str: ...
    def from_kernel(self, text: str) -> Value: ...
    def describe(self) -> str: ...


def _int_input(knob: str, value: object) -> int:
    # bool is an int subclass in Python; a TOML `true` is never a number here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise KnobError(knob, f"expected an integer, got {type(value).__name__} {value!r}", value=value)
    return value


@dataclass(frozen=True)
class IntRange:
    """An integer in [lo, hi]; searched in [search_lo, search_hi], on a log scale where ``log``."""

    lo: int
    hi: int
    search_lo: int | None = None
    search_hi: int | None = None
    log: bool = False
    unit: str = ""

    def validate(self, knob: str, value: object) -> int:
        v = _int_input(knob, value)
        if not self.lo <= v <= self.hi:
            raise KnobError(knob, f"{v} is out of range", value=v, hint=f"allowed: {self.describe()}")
        return v

    def to_kernel(self, value: Value) -> str:
        return str(as_int(value))

    def from_kernel(self, text: str) -> int:
        return int(text.split()[0])

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"integer {self.lo}..{self.hi}{unit}"

    @property
    def bounds(self) -> tuple[int, int]:
        return (
            self.search_lo if self.search_lo is not None else self.lo,
            self.search_hi if self.search_hi is not None else self.hi,
        )


@dataclass(frozen=True)
class Flag:
    """On/off. The kernel sees 0/1; profiles write ``true``/``false`` (0 and 1 are accepted too)."""

    def validate(self, knob: str, value: object) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise KnobError(
            knob, f"expected true or false, got {value!r}", value=value, hint="allowed: true, false"
        )

    def to_kernel(self, value: Value) -> str:
        return "1" if value else "0"

    def from_kernel(self, text: str) -> bool:
        return text.strip() != "0"

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class IntChoice:
    """One of a few integer modes, each with a meaning."""

    choices: tuple[tuple[int, str], ...]

    def validate(self, knob: str, value: object) -> int:
        v = _int_input(knob, value)
        if v not in self.values:
            raise KnobError(
                knob, f"{v} is not one of the allowed modes", value=v, hint=f"allowed: {self.describe()}"
            )
        return v

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(v for v, _ in self.choices)

    def to_kernel(self, value: Value) -> str:
        return str(as_int(value))

    def from_kernel(self, text: str) -> int:
        return int(text.split()[0])

    def describe(self) -> str:
        return ", ".join(f"{v} ({meaning})" for v, meaning in self.choices)


_ALGO_NAME = re.compile(r"[a-z][a-z0-9_]{0,15}")


@dataclass(frozen=True)
class Algorithm:
    """A congestion-control algorithm name. Whether this kernel offers it is a separate, live check
    (see :func:`tuner.knobs.constraints.violations`); here only the form is checked."""

    candidates: tuple[str, ...] = ("cubic", "reno", "bbr", "htcp", "dctcp", "vegas", "westwood")

    def validate(self, knob: str, value: object) -> str:
        if not isinstance(value, str) or not _ALGO_NAME.fullmatch(value):
            raise KnobError(
                knob,
                f"{value!r} is not a congestion-control name",
                value=value,
                hint="use a name such as cubic, reno or bbr",
            )
        return value

    def to_kernel(self, value: Value) -> str:
        return str(value)

    def from_kernel(self, text: str) -> str:
        return text.strip()

    def describe(self) -> str:
        return (
            "a congestion-control algorithm this kernel offers (e.g. " + ", ".join(self.candidates[:3]) + ")"
        )


@dataclass(frozen=True)
class OrderedTuple:
    """``n`` integers each in [lo, hi], non-decreasing (``min <= default <= max``) or, with
    ``strict``, increasing. ``labels`` name the parts in messages. The search varies the
    parts listed in ``search_parts`` within [search_lo, search_hi]."""

    labels: tuple[str, ...]
    lo: int
    hi: int
    strict: bool = False
    search_lo: int | None = None
    search_hi: int | None = None
    log: bool = True
    unit: str = ""
    search_parts: tuple[int, ...] = field(default=())

    def validate(self, knob: str, value: object) -> tuple[int, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise KnobError(
                knob,
                f"expected a list of {len(self.labels)} integers, got {value!r}",
                value=value,
                hint=f"allowed: {self.describe()}",
            )
        if len(value) != len(self.labels):
            raise KnobError(
                knob,
                f"expected {len(self.labels)} integers ({', '.join(self.labels)}), got {len(value)}",
                value=value,
                hint=f"allowed: {self.describe()}",
            )
        parts = tuple(_int_input(f"{knob}[{label}]", v) for label, v in zip(self.labels, value))
        for label, v in zip(self.labels, parts):
            if not self.lo <= v <= self.hi:
                raise KnobError(
                    knob,
                    f"{label} {v} is out of range",
                    value=list(parts),
                    hint=f"allowed: {self.describe()}",
                )
        for (la, a), (lb, b) in zip(zip(self.labels, parts), zip(self.labels[1:], parts[1:])):
            if a > b or (self.strict and a == b):
                rel = "<" if self.strict else "<="
                raise KnobError(
                    knob,
                    f"{la} {a} must be {rel} {lb} {b}",
                    value=list(parts),
                    hint=f"order the values {f' {rel} '.join(self.labels)}",
                )
        return parts

    def to_kernel(self, value: Value) -> str:
        return "\t".join(str(v) for v in as_tuple(value))

    def from_kernel(self, text: str) -> tuple[int, ...]:
        return tuple(int(v) for v in text.split())

    def describe(self) -> str:
        rel = " < " if self.strict else " <= "
        unit = f" {self.unit}" if self.unit else ""
        return f"[{', '.join(self.labels)}] with {rel.join(self.labels)}, each {self.lo}..{self.hi}{unit}"
