"""The service loop of `tuner daemon`: observe, decide, search in a child, apply under the guard.

One thread. The loop waits in ``select`` on a signal wake-up pipe and the running search's output, so
signals, watchdog pings and search progress are handled at once. An observation is one socket dump
compared with the previous one, so no step blocks the loop for long.

Signals: SIGTERM/SIGINT stop (ending a running search and its sandboxes first), SIGHUP reloads the
configuration (an invalid one is rejected and the old one kept), SIGUSR1 wakes the loop to pick up
requests from `tuner daemon --release/--stage` at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tuner.daemon.access import KnobAccess
from tuner.daemon.admin import describe_writer, find_overrides, other_tuners, sysctl_sources
from tuner.daemon.config import DaemonConfig, Mode, OnStop, load_config
from tuner.daemon.guard import GuardWatch, Phase, Signals, combine, select_knobs, signals
from tuner.daemon.metrics import MetricsServer
from tuner.daemon.notify import Notifier
from tuner.daemon.runner import CHILD_ARGV, SearchEvent, SearchJob, SearchRunner
from tuner.daemon.sample import LiveSource, NetnsSource, SampleSource
from tuner.daemon.state import (
    STATE_FILE,
    AppliedRecord,
    DaemonState,
    ManualKnob,
    OwnedKnob,
    ProfileRecord,
    SearchActivity,
    load_state,
    save_state,
)
from tuner.daemon.watch import prune, track
from tuner.errors import ConfigError, EnvironmentProblem, TunerError, UnsafeFileError
from tuner.inputs import parse_json
from tuner.logs import get_logger
from tuner.profiles import profile_name_for
from tuner.trusted import check_owner_mode, ensure_dir, open_nofollow, read_limited

__all__ = [
    "APPLIED_DIR",
    "CONTROL_DIR",
    "INBOX_DIR",
    "LOCK_FILE",
    "PROFILES_DIR",
    "Daemon",
    "daemon_running",
]

log = get_logger(__name__)

LOCK_FILE = "daemon.lock"
CONTROL_DIR = "control"  # release-<knob> requests
INBOX_DIR = "inbox"  # profiles staged for a guarded apply
PROFILES_DIR = "profiles"  # profiles the daemon wrote (one per service, kept current)
APPLIED_DIR = "applied"  # the Applier's journal of each guarded apply
_BASELINE_INTERVALS = 3
_SEARCH_OVERRUN = 1.5  # a search running this much past its time budget (+60 s) is stopped
_REFRESH = 30.0  # seconds between rewrites of an unchanged state (fresh last observation)
_VOLATILE = ("current", "last_seen", "streak", "workload", "path", "process")
_FORGET_AFTER = 7 * 86400.0  # a service unseen this long, with no profile, is forgotten
_MAX_SERVICES = 500  # at most this many service records are kept (least recently seen go)


def daemon_running(state_dir: Path) -> bool:
    """Whether a daemon holds the lock of ``state_dir`` right now."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


class Daemon:
    def __init__(
        self,
        config_path: Path | None = None,
        *,
        netns: str | None = None,
        state_dir: Path | None = None,
        notifier: Notifier | None = None,
        source: SampleSource | None = None,
        child_argv: tuple[str, ...] = CHILD_ARGV,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path = config_path
        self.netns = netns
        self.state_dir_override = state_dir
        self.notifier = notifier or Notifier.from_env()
        self.source = source or (LiveSource() if netns is None else NetnsSource(netns))
        self.target = KnobAccess(netns)
        self.child_argv = child_argv
        self.clock = clock
        self.config: DaemonConfig = self._load_config()
        self.state = DaemonState()
        self.runner: SearchRunner | None = None
        self._stop = False
        self._reload = False
        self._wake = False
        self._recent: list[Signals] = []
        self._next_tick = 0.0
        self._next_ping = 0.0
        self._lock_fd: int | None = None
        self._wake_r = self._wake_w = -1
        self._status = ""
        self._saved: dict[str, Any] | None = None
        self._saved_at = 0.0
        self._metrics: MetricsServer | None = None
        self._loop_lag: float | None = None

    # --- configuration ------------------------------------------------------------------------

    def _load_config(self) -> DaemonConfig:
        cfg = load_config(self.config_path)
        if self.state_dir_override is not None:
            cfg = cfg.with_state_dir(self.state_dir_override)
        return cfg

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def _reload_config(self) -> None:
        self.notifier.reloading()
        try:
            new = self._load_config()
        except ConfigError as exc:
            log.error("config.rejected", file=exc.file, key=exc.key, error=exc.message, hint=exc.hint)
            self.state.note_problem(f"configuration rejected, keeping the previous one: {exc.message}")
            self.notifier.send(
                READY=1, STATUS=f"configuration rejected, running on the previous one: {exc.message}"
            )
            self._status = ""
            return
        if new.state_dir != self.config.state_dir:
            log.warning(
                "config.state_dir_unchanged",
                configured=str(new.state_dir),
                used=str(self.config.state_dir),
                hint="a new state_dir takes effect at the next start",
            )
            new = new.with_state_dir(self.config.state_dir)
        old = self.config
        self.config = new
        log.info("config.reloaded", file=new.source, mode=new.mode.value, enabled=new.enabled)
        if not new.enabled and self.runner is not None:
            self._stop_search("the daemon was disabled by configuration")
        if not new.enabled and self.state.guard is not None:
            # an apply that can no longer be watched is not kept on trust
            record = self._record(self.state.guard.apply_id)
            self.state.guard = None
            if record is not None:
                self._rollback(
                    record, "rolled back", ["the daemon was disabled before the guard window ended"]
                )
        if new.observe.interval != old.observe.interval:
            self._next_tick = min(self._next_tick, time.monotonic() + new.observe.interval)
        if new.metrics != old.metrics:
            self._start_metrics()
        self._sync_state_header()
        self.notifier.send(READY=1, STATUS=self._status_line())

    # --- lifecycle ------------------------------------------------------------------------------

    def _lock(self) -> None:
        ensure_dir(self.state_dir)  # created 0700, or refused when another user could plant files in it
        fd = open_nofollow(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            check_owner_mode(self.state_dir / LOCK_FILE, os.fstat(fd), "lock file")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except UnsafeFileError:
            os.close(fd)
            raise
        except OSError:
            os.close(fd)
            raise EnvironmentProblem(
                f"another tuner daemon is running with state directory {self.state_dir}",
                hint="stop it first (`systemctl stop tuner`), or use another --state-dir",
            ) from None
        self._lock_fd = fd

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop = True
            if self.runner is not None and self.runner.poll() is None:
                # start the search's cleanup now, in parallel with ours
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.runner.pid, signal.SIGTERM)
        elif signum == signal.SIGHUP:
            self._reload = True
        elif signum == signal.SIGUSR1:
            self._wake = True

    def _sync_state_header(self) -> None:
        self.state.pid = os.getpid()
        self.state.mode = self.config.mode.value
        self.state.enabled = self.config.enabled
        self.state.config = self.config.source
        self.state.netns = self.netns

    def run(self) -> int:
        self._lock()
        self._install_signals()
        state_file = self.state_dir / STATE_FILE
        self.state, problem = load_state(state_file)
        if problem:
            self.state.note_problem(problem)
        self.state.started = self.clock()
        self._sync_state_header()
        self._recover()
        self._start_metrics()
        self._save()
        log.info(
            "daemon.started",
            pid=os.getpid(),
            config=self.config.source,
            mode=self.config.mode.value,
            enabled=self.config.enabled,
            state_dir=str(self.state_dir),
            netns=self.netns,
        )
        self.notifier.ready(self._status_line(extra=problem))
        now = time.monotonic()
        self._next_tick = now
        self._next_ping = now
        try:
            while not self._stop:
                self._iterate()
        finally:
            self._shutdown()
        return 0

    def _recover(self) -> None:
        """Tidy what a previous run may have left: a search that no longer runs, stale sandboxes."""
        if self.state.search is not None:
            stale = self.state.search
            log.warning("search.abandoned", service=stale.service, pid=stale.pid)
            self.state.queue.offer(stale.service, f"resumed after restart ({stale.reason})", self.clock())
            self.state.search = None
            self._reap_sandboxes()

    def _iterate(self) -> None:
        now = time.monotonic()
        if self._reload:
            self._reload = False
            self._reload_config()
        if now >= self._next_tick:
            self._loop_lag = now - self._next_tick if self._next_tick else 0.0
            self._next_tick = now + self.config.observe.interval
            self._tick()
            now = time.monotonic()
        if self.runner is not None:
            self._pump_search()
        if self._wake:
            self._wake = False
            self._handle_requests()
            self._save()
        self._ping(now)
        timeout = max(0.0, self._next_tick - time.monotonic())
        if self.notifier.watchdog_period:
            timeout = min(timeout, max(0.0, self._next_ping - time.monotonic()))
        fds = [self._wake_r]
        if self.runner is not None and self.runner.proc is not None and not self.runner.proc.stdout.closed:
            fds.append(self.runner.fileno())
        if self._stop or self._reload or self._wake:
            return
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            readable = []
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass

    def _ping(self, now: float) -> None:
        period = self.notifier.watchdog_period
        if period and now >= self._next_ping:
            self.notifier.watchdog()
            self._next_ping = now + period

    def _shutdown(self) -> None:
        self.notifier.stopping("stopping: ending the running search" if self.runner else "stopping")
        log.info("daemon.stopping", search_running=self.runner is not None)
        if self.runner is not None:
            self._stop_search("the daemon is stopping")
        if self.config.apply.on_stop is OnStop.ROLLBACK:
            self._rollback_all("rolled back on stop")
        self.source.close()
        self.state.activity = "stopped"
        self.state.pid = 0
        self._save(force=True)
        if self._metrics is not None:
            self._metrics.close()
        signal.set_wakeup_fd(-1)
        for fd in (self._wake_r, self._wake_w, self._lock_fd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.notifier.close()
        log.info("daemon.stopped")

    def _save(self, *, force: bool = False) -> None:
        """Write the state file when something changed, or to refresh the last observation at most
        every ``_REFRESH`` seconds (an idle daemon does not rewrite and fsync it every interval)."""
        self.state.activity = self._status_line()
        if self._metrics is not None:
            self._metrics.publish(self.state, loop_lag=self._loop_lag)
        material = self.state.to_dict()
        material.pop("updated")
        material["last_observation"] = bool(material["last_observation"])
        for rec in material["services"].values():  # what changes with every observation
            for volatile in _VOLATILE:
                rec.pop(volatile, None)
        now = time.monotonic()
        if not force and material == self._saved and now - self._saved_at < _REFRESH:
            return
        try:
            save_state(self.state, self.state_dir / STATE_FILE)
        except OSError as exc:  # e.g. a full disk: keep running, say so, try again next time
            log.error("state.save_failed", file=str(self.state_dir / STATE_FILE), error=str(exc))
            return
        self._saved, self._saved_at = material, now

    def _start_metrics(self) -> None:
        """Serve /metrics where [metrics] listen says (again after a reload changed it); a port that cannot
        be bound is a problem to report, not a reason to stop tuning."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        listen = self.config.metrics.listen
        if listen is None:
            return
        server = MetricsServer(*listen)
        try:
            server.start()
        except OSError as exc:
            log.error("metrics.bind_failed", address=f"{listen[0]}:{listen[1]}", error=str(exc))
            self.state.note_problem(
                f"metrics: cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}"
            )
            return
        self._metrics = server
        server.publish(self.state, loop_lag=self._loop_lag)

    def _count_search(self, result: str, summary: dict[str, Any] | None = None) -> None:
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

    # --- one observation ------------------------------------------------------------------------

    def _tick(self) -> None:
        self._handle_requests()
        if not self.config.enabled:
            self._recent = []  # a baseline from before the pause would not describe the host now
            self._set_status("disabled by configuration (enabled = false): not observing")
            self._save()
            return
        try:
            sample = self.source.sample()
        except (TunerError, OSError) as exc:
            message = exc.message if isinstance(exc, TunerError) else str(exc)
            log.error("observe.failed", error=message)
            self.state.note_problem(f"observation failed: {message}")
            self._save()
            return
        if sample is None:  # the first reading: nothing to compare with yet
            self._save()
            return
        wall = self.clock()
        result = track(self.state.services, sample.services, wall, self.config.observe)
        self.state.services = prune(result.records, wall, max_age=_FORGET_AFTER, max_count=_MAX_SERVICES)
        for trig in result.triggers:
            log.info("service.changed", service=trig.key, reason=trig.reason.value, detail=trig.detail)
        for trig in result.to_search:
            if self.state.queue.offer(trig.key, trig.describe(), wall):
                log.info("search.queued", service=trig.key, reason=trig.describe())
        self.state.last_observation = {
            "at": sample.wall,
            "duration": sample.duration,
            "services": sample.summary,
        }
        current = signals(
            sample.counters,
            sample.duration,
            self.config.guard.counters,
            sample.rtt,
            sample.symptoms,
            [o.signature.key for o in sample.services],
        )
        self._recent = ([*self._recent, current])[-_BASELINE_INTERVALS:]
        self._check_manual()
        if self.state.guard is not None:
            self._guard_step(current)
        if self.config.mode is Mode.APPLY and self.state.guard is None and self.state.pending:
            self._apply_next()
        self._maybe_start_search()
        self._save()
        self._set_status(self._status_line())

    # --- searches -------------------------------------------------------------------------------

    def _maybe_start_search(self) -> None:
        if self.runner is not None or self._stop or not self.config.search.enabled:
            return
        policy = self.config.search
        last = {k: r.last_search for k, r in self.state.services.items()}
        queued = self.state.queue.next_ready(self.clock(), last, policy.min_interval, busy=False)
        if queued is None:
            return
        record = self.state.services.get(queued.key)
        if record is None or record.workload is None or record.path is None:
            log.warning("search.skipped", service=queued.key, reason="no workload estimate for this service")
            return
        name = profile_name_for(queued.key)
        profiles = ensure_dir(self.state_dir / PROFILES_DIR)
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
            profile_file=str(profiles / f"{name}.toml"),
            profile_name=name,
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

    def _pump_search(self) -> None:
        runner = self.runner
        assert runner is not None
        for event in runner.read_events():
            self._on_search_event(event)
        status = runner.poll()
        if status is None:
            limit = self.config.search.time * _SEARCH_OVERRUN + 60.0
            if time.monotonic() - runner.started > limit:
                self._stop_search(f"it ran past its time budget ({self.config.search.time:g} s)")
            return
        for event in runner.read_events():
            self._on_search_event(event)
        runner.close()
        if self.state.search is not None:  # ended without a done/failed line
            self._search_failed(runner.job.service, f"the search process exited with status {status}")
        self.runner = None
        self._save()
        self._set_status(self._status_line())

    def _on_search_event(self, event: SearchEvent) -> None:
        act = self.state.search
        if event.kind == "trial" and act is not None:
            act.trial = int(event.data.get("trial", act.trial))
            act.budget = int(event.data.get("budget", act.budget))
            act.detail = str(event.data.get("detail", ""))
            self._set_status(self._status_line())
        elif event.kind == "done":
            self._search_done(event.data)
        elif event.kind == "failed" and not self._stop:  # a stop re-queues it instead (_stop_search)
            self._search_failed(
                str(event.data.get("service", act.service if act else "?")),
                str(event.data.get("error", "unknown error")),
            )

    def _search_done(self, data: dict[str, Any]) -> None:
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
        self.state.profiles = [p for p in self.state.profiles if p.file != file] + [rec]
        if service in self.state.services:
            self.state.services[service] = replace(self.state.services[service], profile=file)
        self.state.rejected.pop(file, None)  # a new search result is a new candidate
        self._count_search("profile" if rec.summary.get("significant") else "no_gain", rec.summary)
        log.info("profile.written", service=service, file=file, summary=rec.summary)
        if self.config.mode is Mode.APPLY:
            self.state.pending = [p for p in self.state.pending if p.get("file") != file]
            self.state.pending.append({"file": file, "service": service, "reason": "search result"})
        self.state.search = None

    def _search_failed(self, service: str, error: str) -> None:
        log.error("search.failed", service=service, error=error)
        self._count_search("failed")
        self.state.note_problem(f"search of {service} failed: {error}")
        self.state.search = None

    def _stop_search(self, why: str) -> None:
        runner = self.runner
        if runner is None:
            return
        log.info("search.stopping", service=runner.job.service, pid=runner.pid, reason=why)
        self.notifier.status(f"ending the search of {runner.job.service}: {why}")
        runner.stop(self.config.search.stop_grace)
        for event in runner.read_events():
            if event.kind == "done":  # it finished just before the stop arrived
                self._on_search_event(event)
        runner.close()
        self._reap_sandboxes()
        if self.state.search is not None:
            act = self.state.search
            # not searched after all: let it run again when the daemon is back
            if act.service in self.state.services:
                self.state.services[act.service] = replace(self.state.services[act.service], last_search=None)
            self.state.queue.offer(act.service, f"interrupted ({why}); {act.reason}", self.clock())
            self.state.search = None
            self._count_search("stopped")
        self.runner = None

    def _reap_sandboxes(self) -> None:
        try:
            from tuner.sandbox import reap_stale

            removed = reap_stale()
        except (TunerError, OSError) as exc:
            log.error("sandbox.reap_failed", error=str(exc))
            return
        if removed:
            log.info("sandbox.reaped", removed=removed)

    # --- administrator ---------------------------------------------------------------------------

    def _handle_requests(self) -> None:
        control = self.state_dir / CONTROL_DIR
        try:
            names = sorted(os.listdir(control))
        except FileNotFoundError:
            names = []
        for name in names:
            path = control / name
            if not name.startswith("release-") or not name.endswith(".json"):
                continue
            try:
                knob = str(parse_json(read_limited(path, 4096, what="request"))["knob"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("request.unreadable", file=str(path), error=str(exc))
                knob = ""
            if knob and self.state.manual.pop(knob, None) is not None:
                log.info("knob.released", knob=knob)
            elif knob:
                log.info("knob.release_ignored", knob=knob, reason="it was not marked manual")
            path.unlink(missing_ok=True)
        inbox = self.state_dir / INBOX_DIR
        try:
            staged = sorted(n for n in os.listdir(inbox) if n.endswith(".toml"))
        except FileNotFoundError:
            staged = []
        if staged and self.config.mode is not Mode.APPLY:
            if not any("staged profiles wait" in p for p in self.state.problems[-3:]):
                self.state.note_problem(f"{len(staged)} staged profiles wait in {inbox}: mode is recommend")
            return
        for name in staged:
            dest = ensure_dir(self.state_dir / PROFILES_DIR) / name
            os.replace(inbox / name, dest)  # a symlink moves as a link; loading it later refuses it
            self.state.rejected.pop(str(dest), None)
            self.state.profiles = [p for p in self.state.profiles if p.file != str(dest)] + [
                ProfileRecord(
                    name=dest.stem,
                    file=str(dest),
                    service=None,
                    created=self.clock(),
                    reason="staged with tuner daemon --stage",
                )
            ]
            self.state.pending = [p for p in self.state.pending if p.get("file") != str(dest)]
            self.state.pending.append({"file": str(dest), "service": None, "reason": "staged"})
            log.info("profile.staged", file=str(dest))

    def _mark_manual(self, knob: str, expected: Any, found: Any) -> None:
        writer = describe_writer(knob, sysctl_sources(knob), other_tuners())
        self.state.manual[knob] = ManualKnob(self.clock(), expected, found, writer)
        owner = self.state.owned.pop(knob, None)
        log.warning(
            "knob.manual",
            knob=knob,
            set_by_daemon=expected,
            live=found,
            writer=writer,
            profile=owner.profile if owner else None,
            hint=f"left alone from now on; `tuner daemon --release {knob}` hands it back",
        )

    def _check_manual(self) -> None:
        """Knobs the daemon set whose live value someone else changed become manually managed."""
        if not self.state.owned:
            return
        try:
            live = self.target.read(list(self.state.owned))
        except TunerError as exc:
            log.error("knob.read_failed", error=exc.message)
            return
        owned = {k: o.value for k, o in self.state.owned.items()}
        for knob, (expected, found) in find_overrides(owned, live).items():
            self._mark_manual(knob, expected, found)

    # --- apply and guard -------------------------------------------------------------------------

    def _apply_next(self) -> None:
        if not self._recent:
            return  # no baseline yet: wait for one more observation
        item = self.state.pending.pop(0)
        file = str(item["file"])
        if file in self.state.rejected:
            log.info("apply.skipped", file=file, reason=self.state.rejected[file])
            return
        apply_id = (
            time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
            + f"-{os.getpid()}-{len(self.state.applied)}"
        )
        record = AppliedRecord(
            apply_id=apply_id,
            profile=Path(file).stem,
            file=file,
            service=item.get("service"),
            at=self.clock(),
            changes={},
            skipped={},
            outcome="failed",
        )
        try:
            profile = self.target.load(Path(file))
            sysctls = dict(profile.sysctl)
            admin = {}
            for knob in sysctls:
                sources = sysctl_sources(knob)
                if sources:
                    admin[knob] = sources[-1].describe()
            held = {k: o.profile for k, o in self.state.owned.items() if o.profile != profile.name}
            sel = select_knobs(
                sysctls,
                allow=self.config.apply.allow,
                manual=self.state.manual,
                admin_files=admin,
                held=held,
                in_netns=self.netns is not None,
            )
            record = replace(record, profile=profile.name, skipped=dict(sel.skipped))
            to_apply = dict(sel.apply)
            # re-read before writing: a value the daemon set that changed since is the administrator's now
            mine = {k: self.state.owned[k].value for k in to_apply if k in self.state.owned}
            if mine:
                live = self.target.read(list(mine))
                for knob, (expected, found) in find_overrides(mine, live).items():
                    self._mark_manual(knob, expected, found)
                    to_apply.pop(knob)
                    record.skipped[knob] = "manually managed"
            if not to_apply:
                record.outcome = "nothing to apply"
                log.info("apply.nothing", profile=profile.name, skipped=record.skipped)
                self.state.applied.append(record)
                return
            journal = self.state_dir / APPLIED_DIR / apply_id
            changes = self.target.apply(
                profile, to_apply, journal, reason=f"tuner daemon: guarded apply of {file}"
            )
        except TunerError as exc:
            log.error("apply.failed", file=file, error=exc.message, hint=exc.hint)
            self.state.note_problem(f"apply of {file} failed: {exc.message}")
            record.reasons.append(exc.message)
            self.state.applied.append(record)
            self.state.rejected[file] = f"apply failed: {exc.message}"
            return
        now = self.clock()
        record.journal = str(journal)
        record.changes = {c.knob: {"old": c.old, "new": c.new} for c in changes}
        if not changes:
            record.outcome = "already in place"
            self.state.applied.append(record)
            log.info("apply.unchanged", profile=profile.name)
            return
        self.state.stats.knobs_applied += len(changes)
        for c in changes:
            self.state.owned[c.knob] = OwnedKnob(c.new, apply_id, profile.name, now)
        record.outcome = "guarding"
        self.state.applied.append(record)
        self.state.guard = GuardWatch(
            apply_id, profile.name, now, now + self.config.guard.window, combine(self._recent)
        )
        log.info(
            "guard.started",
            profile=profile.name,
            apply_id=apply_id,
            window=self.config.guard.window,
            knobs=[c.knob for c in changes],
        )  # each write was logged by the Applier (knob.changed)

    def _record(self, apply_id: str) -> AppliedRecord | None:
        return next((a for a in reversed(self.state.applied) if a.apply_id == apply_id), None)

    def _guard_step(self, current: Signals | None) -> None:
        watch = self.state.guard
        assert watch is not None
        phase, reasons = watch.step(current, self.clock(), self.config.guard)
        if phase is Phase.WATCHING:
            return
        record = self._record(watch.apply_id)
        self.state.guard = None
        if phase is Phase.PASSED:
            if record is not None:
                record.outcome, record.ended = "kept", self.clock()
            log.info("guard.passed", profile=watch.profile, apply_id=watch.apply_id, samples=watch.samples)
            return
        log.warning("guard.regression", profile=watch.profile, apply_id=watch.apply_id, reasons=reasons)
        if record is not None:
            self._rollback(record, "rolled back", reasons)
            self.state.rejected[record.file] = "rolled back by the guard: " + "; ".join(reasons)

    def _rollback(self, record: AppliedRecord, outcome: str, reasons: list[str]) -> None:
        """Restore what one apply changed, except knobs someone else changed since (now manual)."""
        mine = {k: o.value for k, o in self.state.owned.items() if o.apply_id == record.apply_id}
        try:
            live = self.target.read(list(mine)) if mine else {}
            for knob, (expected, found) in find_overrides(mine, live).items():
                self._mark_manual(knob, expected, found)
            still_mine = [k for k, o in self.state.owned.items() if o.apply_id == record.apply_id]
            restored = self.target.rollback(
                Path(record.journal), only=still_mine, reason=f"tuner daemon: {outcome} ({record.profile})"
            )
        except TunerError as exc:
            log.error("rollback.failed", apply_id=record.apply_id, error=exc.message, hint=exc.hint)
            self.state.note_problem(f"rollback of {record.profile} failed: {exc.message}")
            record.reasons = [*list(reasons), f"rollback failed: {exc.message}"]
            return
        log.info(
            "apply.undone",
            apply_id=record.apply_id,
            profile=record.profile,
            outcome=outcome,
            restored=[c.knob for c in restored],
        )
        for knob in still_mine:
            del self.state.owned[knob]
        left = sorted(set(record.changes) - set(still_mine))
        notes = [f"left as the administrator set them: {', '.join(left)}"] if left else []
        record.outcome, record.reasons, record.ended = outcome, list(reasons) + notes, self.clock()
        self.state.stats.rollbacks[outcome] = self.state.stats.rollbacks.get(outcome, 0) + 1

    def _rollback_all(self, outcome: str) -> None:
        for record in reversed(self.state.applied):
            if record.outcome in ("guarding", "kept") and record.journal:
                self._rollback(record, outcome, [])
        self.state.guard = None

    # --- status -----------------------------------------------------------------------------------

    def _set_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.notifier.status(text)

    def _status_line(self, extra: str | None = None) -> str:
        if not self.config.enabled:
            text = "disabled by configuration (enabled = false)"
        else:
            n = sum(1 for r in self.state.services.values() if r.streak > 0)
            parts = [
                f"{self.config.mode.value} mode, watching {n} service{'s' if n != 1 else ''}"
                + (f" in netns {self.netns}" if self.netns else "")
            ]
            act = self.state.search
            if act is not None:
                trial = f"trial {act.trial}/{act.budget}" if act.trial else "starting"
                parts.append(f"searching {act.service} ({trial})")
            if self.state.queue.pending:
                parts.append(f"{len(self.state.queue.pending)} queued")
            if self.state.guard is not None:
                left = max(0.0, self.state.guard.deadline - self.clock())
                parts.append(f"guarding {self.state.guard.profile} ({left:.0f} s left)")
            parts.append(f"{len(self.state.profiles)} profiles written")
            if self.state.manual:
                parts.append(f"{len(self.state.manual)} knobs manual")
            text = "; ".join(parts)
        if extra:
            text += f" ({extra})"
        return text
