"""Line numbers of TOML keys, so validation messages can say where in the file a problem is.

``tomllib`` returns plain data without positions; this is a small line scanner that understands table
headers and (dotted, quoted) keys well enough to point at the line a key is defined on. It is a
best-effort aid for messages: when it cannot tell, it returns ``None`` and the message names the key
without a line.
"""

from __future__ import annotations

import re
import tomllib

__all__ = ["KeyLines", "key_path_text"]

_BARE = r"[A-Za-z0-9_-]+"
_BASIC = r'"(?:[^"\\\n]|\\.)*"'
_LITERAL = r"'[^'\n]*'"
_PART = rf"(?:{_BARE}|{_BASIC}|{_LITERAL})"
_KEY = rf"{_PART}(?:[ \t]*\.[ \t]*{_PART})*"
_PART_RE = re.compile(_PART)
_HEADER_RE = re.compile(rf"[ \t]*(\[\[?)[ \t]*({_KEY})[ \t]*\]\]?")
_KEYLINE_RE = re.compile(rf"[ \t]*({_KEY})[ \t]*=[ \t]*(.*)")


def _parts(key: str) -> tuple[str, ...]:
    out = []
    for m in _PART_RE.finditer(key):
        raw = m.group(0)
        if raw[0] in "\"'":
            try:
                raw = tomllib.loads(f"k = {raw}")["k"]
            except tomllib.TOMLDecodeError:
                return ()
        out.append(raw)
    return tuple(out)


def key_path_text(*parts: str) -> str:
    """A key path written as TOML would (``sysctl."net.core.somaxconn"``), for messages."""
    return ".".join(p if re.fullmatch(_BARE, p) else _quote(p) for p in parts)


_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def _quote(part: str) -> str:
    escaped = []
    for ch in part:
        if ch in _SHORT_ESCAPES:
            escaped.append(_SHORT_ESCAPES[ch])
        elif ch.isprintable() and ch.isascii():  # escape the rest, so look-alike letters show
            escaped.append(ch)
        else:
            escaped.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    return '"' + "".join(escaped) + '"'


class KeyLines:
    """The first line (1-based) each key path of a TOML text is defined on."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        closing: str | None = None  # the delimiter of a multi-line string we are inside
        for number, line in enumerate(text.splitlines(), start=1):
            if closing is not None:
                if line.count(closing) % 2 == 1:
                    closing = None
                continue
            header = _HEADER_RE.match(line)
            if header:
                table = _parts(header.group(2))
                self._note(table, number)
                continue
            keyline = _KEYLINE_RE.match(line)
            if keyline:
                self._note(table + _parts(keyline.group(1)), number)
                rest = keyline.group(2)
                for delim in ('"""', "'''"):
                    if rest.startswith(delim) and rest.count(delim) % 2 == 1:
                        closing = delim

    def _note(self, path: tuple[str, ...], number: int) -> None:
        for i in range(1, len(path) + 1):
            self._lines.setdefault(path[:i], number)

    def line_of(self, *path: str) -> int | None:
        """The line of ``path``, or of its nearest enclosing key that has one."""
        for i in range(len(path), 0, -1):
            if path[:i] in self._lines:
                return self._lines[path[:i]]
        return None
