"""structlog configuration, done once at startup by the CLI.

Readable console lines on a terminal; JSON lines otherwise (under systemd, in pipes, in CI).
Every module logs with ``structlog.get_logger(__name__)`` and one event per meaningful action.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

__all__ = ["configure", "get_logger"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing (it may be replaced after configure)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(level: str = "info", *, json: bool | None = None, stream=None) -> None:
    """Configure structlog. ``json=None`` means: JSON unless stderr is a terminal.

    Without ``stream``, events go to the *current* ``sys.stderr`` at each write."""
    stream = stream or _CurrentStderr()
    if json is None:
        json = not stream.isatty() or "INVOCATION_ID" in os.environ  # systemd sets INVOCATION_ID
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
