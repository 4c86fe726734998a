"""Search scheduling: queue a search of each service that appeared or changed, start the next queued one
in a child, follow its progress, record its outcome.

One search at a time (:class:`tuner.daemon.runner.SearchRunner`). A finished search becomes a
:class:`~tuner.daemon.state.ProfileRecord` (and, in apply mode, a profile waiting for a guarded
apply); a stopped one is queued again; one that runs far past its time budget is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from tuner.daemon.config import DaemonConfig, Mode
from tuner.daemon.notify import Notifier
from tuner.daemon.runner import SearchEvent, SearchJob, SearchRunner
from tuner.daemon.sample import Sample
from tuner.daemon.state import PROFILES_DIR, DaemonState, PendingApply, ProfileRecord, SearchActivity
from tuner.daemon.watch import prune, track
from tuner.errors import TunerError
from tuner.logs import get_logger
from tuner.profiles import profile_name_for
from tuner.trusted import ensure_dir

__all__ = ["SearchScheduler"]

log = get_logger(__name__)

_SEARCH_OVERRUN = 1.5  # a search running this much past its time budget (+60 s) is stopped
_FORGET_AFTER = 7 * 86400.0  # a service unseen this long, with no profile, is forgotten
_MAX_SERVICES = 500  # at most this many service records are kept (least recently seen go)


class SearchScheduler:
    """Runs the queued searches (``state.queue``) one at a time and records each (``state.search``,
    ``state.profiles``, ``state.stats``)."""

    def __init__(
        self,
        state: DaemonState,
        *,
        state_dir: Path,
        child_argv: tuple[str, ...],
        config: Callable[[], DaemonConfig],
        notifier: Notifier,
        on_progress: Callable[[], None],
        clock: Callable[[], float],
        netns: str | None = None,
    ) -> None:
        self.state = state
        self.netns = netns  # the target the searches take their baseline from (None: this host)
        self.profiles_dir = state_dir / PROFILES_DIR
        self.child_argv = child_argv
        self.config = config
        self.notifier = notifier
        self.on_progress = on_progress  # a trial was measured
        self.clock = clock
        self.runner: SearchRunner | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self.runner is not None

    def fileno(self) -> int | None:
        """The running search's output to wait on, if it is still open."""
        runner = self.runner
        if runner is None or runner.proc is None or runner.proc.stdout is None or runner.proc.stdout.closed:
            return None
        return runner.fileno()

    def recover(self) -> None:
        """Tidy what a previous run may have left: a search that no longer runs, stale sandboxes."""
        if self.state.search is not None:
            stale = self.state.search
            log.warning("search.abandoned", service=stale.service, pid=stale.pid)
            self.state.queue.offer(stale.service, f"resumed after restart ({stale.reason})", self.clock())
            self.state.search = None
            _reap_sandboxes()

    def interrupt(self) -> None:
        """The daemon is stopping (from a signal handler): start the search's cleanup now, in parallel
        with the daemon's, and start no other."""
        self._stopping = True
        if self.runner is not None and self.runner.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.runner.pid, signal.SIGTERM)

    def observe(self, sample: Sample, wall: float) -> None:
        """Track the services of one observation (``state.services``); queue a search of each that
        appeared or changed lastingly."""
        result = track(self.state.services, sample.services, wall, self.config().observe)
        self.state.services = prune(result.records, wall, max_age=_FORGET_AFTER, max_count=_MAX_SERVICES)
        for trig in result.triggers:
            log.info("service.changed", service=trig.key, reason=trig.reason.value, detail=trig.detail)
        for trig in result.to_search:
            if self.state.queue.offer(trig.key, trig.describe(), wall):
                log.info("search.queued", service=trig.key, reason=trig.describe())

    def start_next(self) -> None:
        policy = self.config().search
        if self.runner is not None or self._stopping or not policy.enabled:
            return
        last = {k: r.last_search for k, r in self.state.services.items()}
        queued = self.state.queue.next_ready(self.clock(), last, policy.min_interval, busy=False)
        if queued is None:
            return
        record = self.state.services.get(queued.key)
        if record is None or record.workload is None or record.path is None:
            log.warning("search.skipped", service=queued.key, reason="no workload estimate for this service")
            return
        name = profile_name_for(queued.key)
        job = SearchJob(
            service=queued.key,
            reason=queued.reason,
            workload=dict(record.workload),
            path=dict(record.path),
            budget=policy.budget,
            time=policy.time,
            repeats=policy.repeats,
            duration=policy.duration,
            nice=policy.nice,
            io_class=policy.io_class,
            profile_file=str(ensure_dir(self.profiles_dir) / f"{name}.toml"),
            profile_name=name,
            netns=self.netns,
        )
        runner = SearchRunner(job, self.child_argv)
        try:
            pid = runner.start()
        except OSError as exc:
            log.error("search.start_failed", service=queued.key, error=str(exc))
            self.state.note_problem(f"could not start a search of {queued.key}: {exc}")
            return
        self.runner = runner
        now = self.clock()
        self.state.services[queued.key] = replace(record, last_search=now)
        self.state.search = SearchActivity(queued.key, queued.reason, pid, now, 0, policy.budget)

    def pump(self) -> bool:
        """Take what the running search reported; True once it has ended (and is recorded)."""
        runner = self.runner
        assert runner is not None
        for event in runner.read_events():
            self._on_event(event)
        status = runner.poll()
        if status is None:
            limit = self.config().search.time * _SEARCH_OVERRUN + 60.0
            if time.monotonic() - runner.started > limit:
                self.stop(f"it ran past its time budget ({self.config().search.time:g} s)")
            return False
        for event in runner.read_events():
            self._on_event(event)
        runner.close()
        if self.state.search is not None:  # ended without a done/failed line
            self._failed(runner.job.service, f"the search process exited with status {status}")
        self.runner = None
        return True

    def stop(self, why: str) -> None:
        """End the running search (its sandboxes removed); it is queued again."""
        runner = self.runner
        if runner is None:
            return
        log.info("search.stopping", service=runner.job.service, pid=runner.pid, reason=why)
        self.notifier.status(f"ending the search of {runner.job.service}: {why}")
        runner.stop(self.config().search.stop_grace)
        for event in runner.read_events():
            if event.kind == "done":  # it finished just before the stop arrived
                self._on_event(event)
        runner.close()
        _reap_sandboxes()
        if self.state.search is not None:
            act = self.state.search
            # not searched after all: let it run again when the daemon is back
            if act.service in self.state.services:
                self.state.services[act.service] = replace(self.state.services[act.service], last_search=None)
            self.state.queue.offer(act.service, f"interrupted ({why}); {act.reason}", self.clock())
            self.state.search = None
            self._count("stopped")
        self.runner = None

    def _on_event(self, event: SearchEvent) -> None:
        act = self.state.search
        if event.kind == "trial" and act is not None:
            act.trial = int(event.data.get("trial", act.trial))
            act.budget = int(event.data.get("budget", act.budget))
            act.detail = str(event.data.get("detail", ""))
            self.on_progress()
        elif event.kind == "done":
            self._done(event.data)
        elif event.kind == "failed" and not self._stopping:  # a stop re-queues it instead (stop)
            self._failed(
                str(event.data.get("service", act.service if act else "?")),
                str(event.data.get("error", "unknown error")),
            )

    def _done(self, data: Mapping[str, Any]) -> None:
        act = self.state.search
        service = str(data.get("service", act.service if act else ""))
        file = str(data["file"])
        rec = ProfileRecord(
            name=str(data.get("name", Path(file).stem)),
            file=file,
            service=service,
            created=self.clock(),
            reason=act.reason if act else "",
            summary=dict(data.get("summary", {})),
        )
        self.state.add_profile(rec)
        if service in self.state.services:
            self.state.services[service] = replace(self.state.services[service], profile=file)
        self._count("profile" if rec.summary.get("significant") else "no_gain", rec.summary)
        log.info("profile.written", service=service, file=file, summary=rec.summary)
        if self.config().mode is Mode.APPLY:
            self.state.queue_apply(PendingApply(file, service, "search result"))
        self.state.search = None

    def _failed(self, service: str, error: str) -> None:
        log.error("search.failed", service=service, error=error)
        self._count("failed")
        self.state.note_problem(f"search of {service} failed: {error}")
        self.state.search = None

    def _count(self, result: str, summary: Mapping[str, Any] | None = None) -> None:
        runner = self.runner
        if runner is None:
            return
        summary = summary or {}
        self.state.stats.count_search(
            str(runner.job.workload.get("kind", "unknown")),
            result,
            time.monotonic() - runner.started,
            int(summary.get("trials", 0) or 0),
            int(summary.get("invalid_trials", 0) or 0),
        )


def _reap_sandboxes() -> None:
    try:
        from tuner.sandbox import reap_stale

        removed = reap_stale()
    except (TunerError, OSError) as exc:
        log.error("sandbox.reap_failed", error=str(exc))
        return
    if removed:
        log.info("sandbox.reaped", removed=removed)
