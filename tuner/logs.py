"""structlog configuration, done once at startup by the CLI.

Readable console lines on a terminal; JSON lines otherwise (under systemd, in pipes, in CI).
Under journald (``$JOURNAL_STREAM`` names the stream stderr is connected to) every line starts with
its syslog priority, ``<3>`` for errors ... ``<7>`` for debug (sd-daemon(3)), so ``journalctl -p warning``
filters tuner's events. Every module logs with ``structlog.get_logger(__name__)`` and one event per
meaningful action.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

import structlog

__all__ = ["configure", "configured", "get_logger", "journal_prefix"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# syslog priorities of structlog's level names (sd-daemon(3) prefixes)
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def _is_journal(stream: object) -> bool:
    """Whether ``stream`` is the journald stream systemd connected us to ($JOURNAL_STREAM = "dev:inode")."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        st = os.fstat(fd)
        dev, ino = (int(x) for x in expected.split(":"))
    except (AttributeError, OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def journal_prefix(level: str) -> str:
    """``<N>`` for a plain line printed to stderr at ``level`` when stderr is journald's stream, else ""."""
    return f"<{_PRIORITY.get(level, 6)}>" if _is_journal(sys.stderr) else ""


def _with_priority(renderer):
    """Prefix each rendered line with the event's syslog priority, for journald."""

    def render(logger, method_name, event_dict):
        priority = _PRIORITY.get(str(event_dict.get("level", method_name)), 6)
        return f"<{priority}>" + renderer(logger, method_name, event_dict)

    return render


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing (it may be replaced after configure)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    def fileno(self) -> int:
        return sys.stderr.fileno()


@dataclass
class _Settings:
    level: str = "warning"
    json: bool | None = None


_SETTINGS = _Settings()  # the last configure()'s


def configured() -> tuple[str, bool | None]:
    """(level, json) of the last :func:`configure`: what a worker process configures in its turn."""
    return _SETTINGS.level, _SETTINGS.json


def configure(level: str = "info", *, json: bool | None = None, stream=None) -> None:
    """Configure structlog. ``json=None`` means: JSON unless stderr is a terminal (or under systemd).

    Without ``stream``, events go to the *current* ``sys.stderr`` at each write."""
    _SETTINGS.level, _SETTINGS.json = level, json
    stream = stream or _CurrentStderr()
    if json is None:
        json = not stream.isatty() or "INVOCATION_ID" in os.environ  # systemd sets INVOCATION_ID
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    if _is_journal(stream):
        renderer = _with_priority(renderer)
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
