"""Bounds on everything read from outside: nesting depth of documents, finite numbers within ranges.

Every loader (profiles, daemon config, daemon state, search journal) parses through :func:`parse_toml` or
:func:`parse_json`, so a document nested thousands of levels deep is refused with the key path where it
went too deep instead of crashing the parser or a validator with ``RecursionError``. Every number that
becomes a duration, a rate, a size or a count goes through :func:`bounded`, which refuses NaN, infinities
and values outside the range with the range in the message.
"""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

from tuner.errors import InputError

__all__ = ["MAX_NESTING", "TooDeep", "bounded", "bounded_int", "check_nesting", "parse_json", "parse_toml"]

MAX_NESTING = 16  # tables/arrays inside each other; a profile or config needs 4, evidence about 6


class TooDeep(ValueError):
    """A document nested deeper than :data:`MAX_NESTING` levels; ``path`` is where it went too deep."""

    def __init__(self, path: tuple[str, ...], limit: int) -> None:
        self.path = path
        self.limit = limit
        where = ".".join(path) if path else "the top level"
        super().__init__(f"nested more than {limit} levels deep (at {where})")


def check_nesting(doc: Any, limit: int = MAX_NESTING) -> None:
    """Raise :class:`TooDeep` if tables/arrays in ``doc`` nest deeper than ``limit`` (iterative: a deep
    document cannot exhaust the stack here)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(doc, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > limit:
            raise TooDeep(path[: limit + 1], limit)
        if isinstance(node, dict):
            stack.extend((v, (*path, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, f"[{i}]")) for i, v in enumerate(node))


def parse_toml(text: str, limit: int = MAX_NESTING) -> dict[str, Any]:
    """``tomllib.loads`` that refuses deep nesting. Raises ``tomllib.TOMLDecodeError`` or :class:`TooDeep`."""
    try:
        doc = tomllib.loads(text)
    except RecursionError:
        raise TooDeep((), limit) from None
    check_nesting(doc, limit)
    return doc


def parse_json(data: str | bytes, limit: int = MAX_NESTING, *, allow_nan: bool = False) -> Any:
    """``json.loads`` that refuses deep nesting, and NaN and infinities unless ``allow_nan`` (tuner's own
    records may hold them). Raises ``ValueError`` (JSONDecodeError, :class:`TooDeep`, a refused constant)."""

    def constant(name: str) -> Any:
        if allow_nan:
            return float(name)
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        doc = json.loads(data, parse_constant=constant)
    except RecursionError:
        raise TooDeep((), limit) from None
    check_nesting(doc, limit)
    return doc


def bounded(
    value: object, lo: float, hi: float, what: str, *, unit: str = "", lo_open: bool = False
) -> float:
    """``value`` as a float if it is a finite number in [lo, hi] (``(lo, hi]`` with ``lo_open``); otherwise
    :class:`InputError` naming ``what`` and the range."""
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]{(' ' + unit) if unit else ''}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what}: expected a number, got {value!r}", hint=f"a number in {span}")
    try:
        number = float(value)
    except OverflowError:
        raise InputError(f"{what}: {_short(value)} is far too large", hint=f"a number in {span}") from None
    if math.isnan(number) or number < lo or number > hi or (lo_open and number <= lo):
        shown = f"{number:g}" if math.isfinite(number) or math.isnan(number) else str(number)
        raise InputError(f"{what}: {shown} is out of range {span}", hint=f"a number in {span}")
    return number


def bounded_int(value: object, lo: int, hi: int, what: str) -> int:
    """``value`` if it is an integer (not a bool) in [lo, hi]; otherwise :class:`InputError` with the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(
            f"{what}: expected a whole number, got {value!r}", hint=f"a whole number in [{lo}, {hi}]"
        )
    if not lo <= value <= hi:
        raise InputError(
            f"{what}: {_short(value)} is out of range [{lo}, {hi}]", hint=f"a whole number in [{lo}, {hi}]"
        )
    return value


def _short(value: int | float) -> str:
    """A number for a message: at most 20 characters (a 400-digit integer is not echoed whole)."""
    try:
        text = str(value)
    except ValueError:  # more digits than int -> str converts
        return "a number with thousands of digits"
    return text if len(text) <= 20 else f"{text[:12]}... ({len(text)} digits)"
