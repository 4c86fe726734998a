"""The parent's side of a search: one child process (`python -m tuner.daemon.searcher`) per search.

The child gets a :class:`SearchJob` as JSON on stdin, lowers its own CPU and I/O priority, imports the
search stack (scikit-optimize, numpy: never loaded in the daemon itself), runs the search and reports
JSON lines on stdout (:class:`SearchEvent`). It runs in its own process group so that a stop can
reach every process it started; its sandboxes are removed by the child on SIGTERM, and by
``tuner.sandbox.reap_stale`` if it had to be killed. The child also gets SIGTERM when the daemon dies
(PR_SET_PDEATHSIG), so a daemon killed with SIGKILL leaves no search running beside its successor's.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tuner.logs import get_logger

__all__ = ["CHILD_ARGV", "SearchEvent", "SearchJob", "SearchRunner"]

log = get_logger(__name__)
CHILD_ARGV: tuple[str, ...] = (sys.executable, "-m", "tuner.daemon.searcher")
_MAX_LINE = 1 << 20


@dataclass(frozen=True)
class SearchJob:
    service: str
    reason: str
    workload: Mapping[str, Any]  # Workload.to_dict()
    path: Mapping[str, Any]  # Path.to_dict()
    budget: int
    time: float
    repeats: int
    duration: float
    nice: int
    io_class: str
    profile_file: str
    profile_name: str
    netns: str | None = None  # the daemon's target: its live settings are the search's baseline

    def to_json(self) -> str:
        d = asdict(self)
        d["workload"], d["path"] = dict(self.workload), dict(self.path)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> SearchJob:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class SearchEvent:
    """One line from the child: ``kind`` is started, trial, done or failed."""

    kind: str
    data: Mapping[str, Any]

    def to_line(self) -> str:
        return json.dumps({"event": self.kind, **self.data}, default=str) + "\n"

    @classmethod
    def from_line(cls, line: str) -> SearchEvent:
        d = json.loads(line)
        if not isinstance(d, dict) or "event" not in d:
            raise ValueError("not an event")
        kind = str(d.pop("event"))
        return cls(kind, d)


_PR_SET_PDEATHSIG = 1


def _die_with_daemon(daemon: int) -> None:
    """In the forked child before exec: SIGTERM (its orderly stop) when the daemon dies, even by SIGKILL,
    so a restarted daemon never finds an orphaned search still running beside its own."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != daemon:  # the daemon died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class SearchRunner:
    """One running search child."""

    def __init__(self, job: SearchJob, argv: Sequence[str] = CHILD_ARGV) -> None:
        self.job = job
        self.argv = list(argv)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._buf = b""
        self.killed = False

    def start(self) -> int:
        env = {
            k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=env,
            process_group=0,
            close_fds=True,
            # prctl only, no locks taken: safe although the daemon has threads
            preexec_fn=functools.partial(_die_with_daemon, os.getpid()),  # noqa: PLW1509
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(self.job.to_json().encode())
            self.proc.stdin.close()
        except OSError:  # the child went away before it read its job: reap it, keep no pipe open
            self._kill_group()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            raise
        fd = self.proc.stdout.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.started = time.monotonic()
        log.info(
            "search.started",
            service=self.job.service,
            pid=self.proc.pid,
            reason=self.job.reason,
            budget=self.job.budget,
            time=self.job.time,
        )
        return self.proc.pid

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def fileno(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def read_events(self) -> list[SearchEvent]:
        """Every complete line the child wrote since the last call (never blocks)."""
        if self.proc is None or self.proc.stdout is None or self.proc.stdout.closed:
            return []
        while True:
            try:
                chunk = os.read(self.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buf += chunk
            if len(self._buf) > _MAX_LINE and b"\n" not in self._buf:
                self._buf = b""  # a runaway line; drop it rather than grow without bound
        events = []
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            if not raw.strip():
                continue
            try:
                events.append(SearchEvent.from_line(raw.decode(errors="replace")))
            except ValueError:
                log.warning("search.bad_line", line=raw[:200].decode(errors="replace"))
        return events

    def poll(self) -> int | None:
        """The child's exit status once it has ended (negative: killed by that signal), else None."""
        return self.proc.poll() if self.proc else None

    def stop(self, grace: float) -> None:
        """End the search: SIGTERM to the child (it removes its sandboxes), then, after ``grace``
        seconds, SIGKILL to its whole process group. Returns once the child is reaped."""
        if self.proc is None or self.proc.poll() is not None:
            self._kill_group()
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("search.kill", pid=self.proc.pid, grace=grace)
            self.killed = True
            self._kill_group()
            self.proc.wait()
        self._kill_group()  # helpers the child left behind in its group, if any
        log.info("search.stopped", service=self.job.service, pid=self.proc.pid, status=self.proc.returncode)

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
