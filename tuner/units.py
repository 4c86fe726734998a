"""Parsing of human quantities used on the command line and in files: durations, rates, sizes, ratios.

All parsers raise :class:`~tuner.errors.InputError` naming the text and the accepted forms.
"""

from __future__ import annotations

import math
import re

from tuner.errors import InputError

__all__ = [
    "format_count",
    "format_duration",
    "format_metric",
    "format_size",
    "format_value",
    "parse_duration",
    "parse_rate",
    "parse_ratio",
    "parse_size",
]

_NUM = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION: dict[str, float] = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_RATE: dict[str, float] = {
    "bit": 1,
    "kbit": 1e3,
    "mbit": 1e6,
    "gbit": 1e9,
    "bps": 8,
    "kbps": 8e3,
    "mbps": 8e6,
    "gbps": 8e9,
}
_SIZE: dict[str, float] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 10**6,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 10**9,
}


def _split(text: str, what: str, forms: str) -> tuple[float, str]:
    m = re.fullmatch(_NUM + r"\s*([a-zA-Z%]*)", text.strip())
    if not m:
        raise InputError(f"cannot read {what} {text!r}", hint=f"use {forms}")
    return float(m.group(1)), m.group(2).lower()


def _scaled(text: str, what: str, forms: str, units: dict[str, float]) -> float:
    """A number with one of ``units`` (unit -> scale), times its scale."""
    value, unit = _split(text, what, forms)
    if unit not in units:
        raise InputError(f"unknown {what} unit in {text!r}", hint=f"use {forms}")
    return value * units[unit]


def parse_duration(text: str) -> float:
    """'50ms' -> 0.05 seconds; a bare number is seconds."""
    return _scaled(text, "duration", "a number with us, ms, s, m or h (e.g. 50ms, 2s)", _DURATION)


def parse_rate(text: str) -> float:
    """'100mbit' -> 1e8 bits per second (tc's units: bit, kbit, mbit, gbit; bps variants are bytes)."""
    return _scaled(text, "rate", "a number with bit, kbit, mbit or gbit (e.g. 100mbit)", _RATE)


def parse_size(text: str) -> int:
    """'64KiB' / '64k' -> 65536 bytes; a bare number is bytes."""
    forms = "a number of bytes, optionally with k/KiB, m/MiB, g/GiB (e.g. 64KiB)"
    return int(_scaled(text, "size", forms, _SIZE))


def parse_ratio(text: str) -> float:
    """'0.5%' -> 0.005; a bare number between 0 and 1 is a fraction."""
    forms = "a percentage (0.5%) or a fraction (0.005)"
    value, unit = _split(text, "ratio", forms)
    if unit == "%":
        value /= 100.0
    elif unit:
        raise InputError(f"unknown unit in {text!r}", hint=f"use {forms}")
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{text!r} is not between 0 and 100%", hint=f"use {forms}")
    return value


def format_size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def format_value(value: object, *, unset: str = "unset") -> str:
    """A knob's value as people write it: on/off, a triple with spaces, ``unset`` for None."""
    if value is None:
        return unset
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(format_value(v, unset=unset) for v in value)
    return str(value)


def format_count(n: float, unit: str = "") -> str:
    """40600 -> '40.6k', 1.2e6 -> '1.2M' (3 significant digits), with an optional unit ('/s')."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def format_metric(name: str, value: float) -> str:
    """A metric's value in human units, from the unit its name ends with (_ms, _s, _mbps, _fraction, ...)."""
    if not math.isfinite(value):
        return str(value)
    if name.endswith("_ms"):
        return format_duration(value / 1e3)
    if name.endswith("_s"):
        return format_duration(value)
    if name.endswith("_mbps"):
        return f"{value:.3g} Mbit/s"
    if name.endswith(("_fraction", "_share", "_ratio")):
        return f"{value * 100:.3g}%"
    if name.endswith(("_bytes", "_b")):
        return format_size(value)
    if name in ("tps", "connect_rate") or name.endswith("_rate"):
        return format_count(value, "/s")
    return format_count(value)


def format_duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"
