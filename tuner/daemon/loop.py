"""The service loop of `tuner daemon`: observe, decide, search in a child, apply under the guard.

One thread. The loop waits in ``select`` on a signal wake-up pipe and the running search's output, so
signals, watchdog pings and search progress are handled at once. An observation is one socket dump
compared with the previous one, so no step blocks the loop for long.

Signals: SIGTERM/SIGINT stop (ending a running search and its sandboxes first), SIGHUP reloads the
configuration (an invalid one is rejected and the old one kept), SIGUSR1 wakes the loop to pick up
requests from `tuner daemon --release/--stage` at once (:mod:`tuner.daemon.control`).

The loop delegates: searches to :class:`~tuner.daemon.scheduler.SearchScheduler`, applies to
:class:`~tuner.daemon.guarded.GuardedApply`, manual overrides to :class:`~tuner.daemon.manual.ManualKnobs`,
the state file to :class:`~tuner.daemon.state.StateWriter`.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuner.daemon.access import KnobAccess
from tuner.daemon.config import DaemonConfig, OnStop, load_config, reload_config
from tuner.daemon.control import LOCK_FILE, ControlDir
from tuner.daemon.guarded import GuardedApply
from tuner.daemon.manual import ManualKnobs
from tuner.daemon.metrics import MetricsServer
from tuner.daemon.notify import Notifier
from tuner.daemon.runner import CHILD_ARGV
from tuner.daemon.sample import LiveSource, NetnsSource, SampleSource
from tuner.daemon.scheduler import SearchScheduler
from tuner.daemon.state import STATE_FILE, DaemonState, StateWriter, load_state
from tuner.daemon.status import status_line
from tuner.errors import ConfigError, EnvironmentProblem, TunerError, UnsafeFileError
from tuner.logs import get_logger
from tuner.trusted import check_owner_mode, ensure_dir, open_nofollow

__all__ = ["Daemon"]

log = get_logger(__name__)


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
        self.config: DaemonConfig = load_config(config_path, state_dir=state_dir)
        self.control = ControlDir(self.state_dir)
        self.writer = StateWriter(self.state_dir / STATE_FILE)
        self._use_state(DaemonState())
        self._stop = False
        self._reload = False
        self._wake = False
        self._next_tick = 0.0
        self._next_ping = 0.0
        self._lock_fd: int | None = None
        self._wake_r = self._wake_w = -1
        self._status = ""
        self._metrics: MetricsServer | None = None
        self._loop_lag: float | None = None

    def _use_state(self, state: DaemonState) -> None:
        """Work on ``state`` (the one loaded at start): the units the loop delegates to share it."""
        self.state = state
        self.manual = ManualKnobs(state, self.target, self.clock)
        self.guarded = GuardedApply(
            state,
            self.target,
            self.manual,
            state_dir=self.state_dir,
            config=lambda: self.config,
            clock=self.clock,
        )
        self.searches = SearchScheduler(
            state,
            state_dir=self.state_dir,
            child_argv=self.child_argv,
            config=lambda: self.config,
            notifier=self.notifier,
            on_progress=lambda: self._set_status(self._status_line()),
            clock=self.clock,
            netns=self.netns,
        )

    # --- configuration ------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def _reload_config(self) -> None:
        self.notifier.reloading()
        try:
            new = reload_config(self.config_path, self.config, state_dir=self.state_dir_override)
        except ConfigError as exc:
            log.error("config.rejected", file=exc.file, key=exc.key, error=exc.message, hint=exc.hint)
            self.state.note_problem(f"configuration rejected, keeping the previous one: {exc.message}")
            self.notifier.send(
                READY=1, STATUS=f"configuration rejected, running on the previous one: {exc.message}"
            )
            self._status = ""
            return
        old = self.config
        self.config = new
        log.info("config.reloaded", file=new.source, mode=new.mode.value, enabled=new.enabled)
        if not new.enabled:
            self.searches.stop("the daemon was disabled by configuration")
            # an apply that can no longer be watched is not kept on trust
            self.guarded.abandon("the daemon was disabled before the guard window ended")
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
            self.searches.interrupt()
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
        state, problem = load_state(state_file)
        self._use_state(state)
        if problem:
            self.state.note_problem(problem)
        self.state.started = self.clock()
        self._sync_state_header()
        self.searches.recover()
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
        if self.searches.running and self.searches.pump():
            self._save()
            self._set_status(self._status_line())
        if self._wake:
            self._wake = False
            self._handle_requests()
            self._save()
        self._ping(now)
        timeout = max(0.0, self._next_tick - time.monotonic())
        if self.notifier.watchdog_period:
            timeout = min(timeout, max(0.0, self._next_ping - time.monotonic()))
        fds = [self._wake_r]
        search_fd = self.searches.fileno()
        if search_fd is not None:
            fds.append(search_fd)
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
        running = self.searches.running
        self.notifier.stopping("stopping: ending the running search" if running else "stopping")
        log.info("daemon.stopping", search_running=running)
        self.searches.stop("the daemon is stopping")
        if self.config.apply.on_stop is OnStop.ROLLBACK:
            self.guarded.rollback_all("rolled back on stop")
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
        self.state.activity = self._status_line()
        if self._metrics is not None:
            self._metrics.publish(self.state, loop_lag=self._loop_lag)
        self.writer.save(self.state, force=force)

    def _start_metrics(self) -> None:
        """Serve /metrics where [metrics] listen says (again after a reload changed it)."""
        if self._metrics is not None:
            self._metrics.close()
        self._metrics = MetricsServer.serve(self.config.metrics.listen, self.state, loop_lag=self._loop_lag)

    # --- one observation ------------------------------------------------------------------------

    def _tick(self) -> None:
        self._handle_requests()
        if not self.config.enabled:
            self.guarded.forget_baseline()
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
        self.searches.observe(sample, self.clock())
        self.state.last_observation = {
            "at": sample.wall,
            "duration": sample.duration,
            "services": sample.summary,
        }
        self.manual.check()
        self.guarded.step(sample)
        self.searches.start_next()
        self._save()
        self._set_status(self._status_line())

    def _handle_requests(self) -> None:
        """Requests of `tuner daemon --release/--stage` (see tuner.daemon.control)."""
        for request in self.control.take_releases():
            self.manual.release(request.knob)
        self.guarded.take_staged(self.control)

    # --- status -----------------------------------------------------------------------------------

    def _set_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.notifier.status(text)

    def _status_line(self, extra: str | None = None) -> str:
        return status_line(self.state, self.config, self.netns, self.clock(), extra)
