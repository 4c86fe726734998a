"""Shared output helpers for the CLI: tables, JSON, progress on stderr."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from tuner.errors import NotRootError

__all__ = ["Progress", "print_json", "print_table", "require_root"]


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, file=None) -> None:
    file = file or sys.stdout
    text_rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*headers).rstrip(), file=file)
    print(fmt.format(*("-" * w for w in widths)).rstrip(), file=file)
    for r in text_rows:
        print(fmt.format(*r).rstrip(), file=file)


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "value"):  # enums
        return obj.value
    return str(obj)


def print_json(data: Any, *, file=None) -> None:
    json.dump(data, file or sys.stdout, indent=2, sort_keys=False, default=_default)
    print(file=file or sys.stdout)


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise NotRootError(action)


class Progress:
    """A one-line progress display on stderr (rewritten in place on a terminal, a line per step otherwise)."""

    def __init__(self, total: int | None = None, *, file=None) -> None:
        self.total = total
        self.file = file or sys.stderr
        self.tty = self.file.isatty()
        self.start = time.monotonic()

    def update(self, done: int, message: str) -> None:
        elapsed = time.monotonic() - self.start
        count = f"{done}/{self.total}" if self.total else str(done)
        line = f"[{count} {elapsed:5.1f}s] {message}"
        if self.tty:
            print("\r\033[K" + line, end="", file=self.file, flush=True)
        else:
            print(line, file=self.file, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=self.file, flush=True)
