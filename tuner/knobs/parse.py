"""``KNOB=VALUE`` settings as people type them on a command line, validated through the catalogue.

    parse_settings(["TCP_NODELAY=on", "net.ipv4.tcp_rmem=4096,131072,6291456", "SO_RCVBUF=4MiB"])
    -> Assignment({"TCP_NODELAY": True, "net.ipv4.tcp_rmem": (4096, 131072, 6291456), "SO_RCVBUF": 4194304})

Accepted forms, by the knob's domain: flags ``true/false``, ``on/off``, ``yes/no``, ``1/0``; integers,
with a size unit for byte knobs (``64KiB``, ``4m``), a duration for second and millisecond knobs
(``2m``, ``500ms``); a mode by number or by its meaning (``tcp_tw_reuse=loopback only``); triples
and pairs separated by commas or spaces (``"4096 131072 6291456"``). Every error is a
:class:`~tuner.errors.KnobError` naming the knob and the accepted forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tuner.errors import InputError, KnobError
from tuner.knobs.assignment import Assignment
from tuner.knobs.catalogue import Knob, get_knob
from tuner.knobs.constraints import KernelFacts
from tuner.knobs.domains import Algorithm, Flag, IntChoice, IntRange, OrderedTuple, Value
from tuner.units import parse_duration, parse_size

__all__ = ["parse_setting", "parse_settings", "parse_value"]

_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}


def _int(knob: Knob, text: str, unit: str) -> int:
    text = text.strip()
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    try:
        if unit == "bytes":
            return parse_size(text)
        if unit in ("s", "ms"):
            value = parse_duration(text) * (1 if unit == "s" else 1000)
            if value == int(value):
                return int(value)
            raise InputError(f"{text!r} is not a whole number of {unit}")
    except InputError as exc:
        raise KnobError(knob.name, str(exc), value=text, hint=f"allowed: {knob.domain.describe()}") from None
    raise KnobError(
        knob.name, f"{text!r} is not an integer", value=text, hint=f"allowed: {knob.domain.describe()}"
    )


def parse_value(knob: Knob, text: str) -> Value:
    """The canonical value of ``knob`` written as ``text`` (validated against its domain)."""
    domain = knob.domain
    raw: object
    if isinstance(domain, Flag):
        low = text.strip().lower()
        if low not in _TRUE | _FALSE:
            raise KnobError(
                knob.name, f"{text!r} is not a flag", value=text, hint="use on/off, true/false or 1/0"
            )
        raw = low in _TRUE
    elif isinstance(domain, IntChoice):
        by_meaning = {meaning.lower(): v for v, meaning in domain.choices}
        low = text.strip().lower()
        raw = by_meaning[low] if low in by_meaning else _int(knob, text, "")
    elif isinstance(domain, IntRange):
        raw = _int(knob, text, domain.unit)
    elif isinstance(domain, OrderedTuple):
        parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
        raw = [_int(knob, p, domain.unit) for p in parts]
    elif isinstance(domain, Algorithm):
        raw = text.strip()
    else:
        raw = text
    return knob.validate(raw)


def parse_setting(text: str) -> tuple[str, Value]:
    """``"KNOB=VALUE"`` -> (knob name, canonical value)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise KnobError(
            text,
            "is not a KNOB=VALUE setting",
            value=text,
            hint="write e.g. TCP_NODELAY=on or net.core.somaxconn=4096 (list the knobs with `tuner knobs`)",
        )
    return name.strip(), parse_value(get_knob(name.strip()), value)


def parse_settings(texts: Iterable[str], facts: KernelFacts | None = None) -> Assignment:
    """An assignment from ``KNOB=VALUE`` texts, checked against the coupled constraints too.

    A knob given twice keeps its last value.
    """
    assignment: dict[str, Value] = {}
    for text in texts:
        name, value = parse_setting(text)
        assignment[name] = value
    return Assignment.checked(assignment, facts)
