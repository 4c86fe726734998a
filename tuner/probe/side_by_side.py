"""Measurements side by side: several probes at once, each repeat in a sandbox of its own.

For kinds whose probe waits on timers rather than on the CPU (keepalive: a healthy phase of seconds,
then a dead-peer window of up to 18 s, with the machine idle), running measurements one after another
spends the wall time waiting. Here every repeat of every requested measurement runs at the same time,
each in its own sandbox (two namespaces and a delay line, started from the target's values and the
assignment's sysctls, exactly as :func:`tuner.probe.runner.run_probe` builds one), in worker processes;
the repeats of one request are then pooled into its measurement. Each repeat has its own namespaces,
so its kernel counters and the path's health are its own, and nothing one setting does can reach
another's connections.

The workers are started once and serve the whole search. They are forked from a fork server (not from
the caller, which may run a progress thread) that has imported the probes already: a freshly spawned
interpreter spends ~0.4 s of CPU importing them, and the 14 workers a keepalive search added for its
last batch took 6 s to start on two cores. The fork server is started from ``/``, so that it imports
the installed ``tuner`` rather than a ``tuner/`` directory the caller's working directory may hold;
the workers write to the stderr the caller had when its first pool started. On an interrupt or an
error in the caller, the workers are sent SIGTERM (which their initializer turns into an exit that
unwinds the probe and removes its sandbox; a repeat still queued then ends before it builds one) and
joined before the exception goes on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import forkserver
from typing import Any

from tuner.knobs import Value
from tuner.logs import configured, get_logger
from tuner.probe.measurement import Measurement, pool_measurements
from tuner.probe.target import TargetBaseline
from tuner.workload import NetworkPath, Workload

__all__ = ["Request", "SideBySide", "start_fork_server"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Request:
    """One measurement to take: ``assignment`` over ``repeats`` repeats."""

    assignment: Mapping[str, Value]
    repeats: int


# what a worker runs, imported once by the fork server rather than by every worker
_PRELOAD = ("tuner.probe.runner", "tuner.kinds", "tuner.sandbox", "tuner.probe.keepalive")
_STOPPED = threading.Event()  # in a worker: SIGTERM came, take no further repeat


def _on_sigterm(*_: object) -> None:
    _STOPPED.set()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the unwinding short
    sys.exit(1)


def _worker_init(level: str = "warning", json: bool | None = None) -> None:
    """A worker leaves Ctrl-C to the caller (which stops the workers it started) and turns SIGTERM
    into an exit, so that the probe it runs removes its sandbox on the way out. It logs as its caller
    does (level and format: JSON with journald priorities under systemd, tuner.logs)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    from tuner.logs import configure

    configure(level=level, json=json)


def _one_repeat(
    workload: Workload,
    path: NetworkPath,
    assignment: Mapping[str, Value],
    duration: float,
    target: TargetBaseline | None,
) -> Measurement:
    from tuner.probe.runner import run_probe  # in the worker

    if _STOPPED.is_set():
        # the executor's worker loop goes on to the repeats already queued (it catches the SystemExit
        # of the stop): they end at once, before a sandbox is built
        raise RuntimeError("the pool was stopped before this repeat ran")
    return run_probe(workload, path, assignment, repeats=1, duration=duration, target=target)


def start_fork_server() -> multiprocessing.context.ForkServerContext:
    """The context whose fork server the workers come from, started (once per process, from ``/``, with
    the probes imported; see the module documentation). Like multiprocessing's resource tracker, it lives
    as long as this process and ends with it."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_PRELOAD))
    with contextlib.chdir("/"):  # its first sys.path entry is its working directory
        forkserver.ensure_running()
    return context


class SideBySide:
    """A pool of up to ``workers`` sandboxes at once; a context manager (the workers end with it)."""

    def __init__(
        self,
        workload: Workload,
        path: NetworkPath,
        duration: float,
        target: TargetBaseline | None,
        workers: int,
    ) -> None:
        if workers < 2:
            raise ValueError("side by side needs at least two workers")
        self.workload, self.path, self.duration, self.target = workload, path, duration, target
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._others: set[Any] = set()  # this process's children that are not the pool's workers

    def __enter__(self) -> SideBySide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(stop=exc[0] is not None)

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._others = set(multiprocessing.active_children())
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=start_fork_server(),
                initializer=_worker_init,
                initargs=configured(),
            )
        return self._pool

    def close(self, *, stop: bool = False) -> None:
        """End the workers: at once when ``stop`` (SIGTERM: each removes its sandbox on the way out),
        else once they are idle."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not stop:
            pool.shutdown(wait=True)
            return
        ours = [p for p in multiprocessing.active_children() if p not in self._others]
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in ours:
            if proc.is_alive():
                proc.terminate()
        for proc in ours:
            proc.join(timeout=30.0)

    def measure(self, requests: Sequence[Request]) -> list[Measurement]:
        """Every repeat of every request at once (at most ``workers`` at a time); one measurement per
        request, in order. A repeat whose worker failed makes its request's measurement failed."""
        pool = self._started()
        jobs: list[list[Future[Measurement]]] = []
        try:
            for req in requests:
                jobs.append(
                    [
                        pool.submit(
                            _one_repeat,
                            self.workload,
                            self.path,
                            dict(req.assignment),
                            self.duration,
                            self.target,
                        )
                        for _ in range(max(1, req.repeats))
                    ]
                )
            pending = [f for fs in jobs for f in fs]
            while pending:
                pending = list(wait(pending, timeout=0.5).not_done)
                if self._pool is not pool:  # stopped meanwhile: its unfinished repeats will not come
                    break
        except BaseException:
            self.close(stop=True)
            raise
        note = "repeats measured side by side, each in a sandbox of its own"
        out = [
            pool_measurements([self._outcome(req, f) for f in fs], note) for req, fs in zip(requests, jobs)
        ]
        done = [f for fs in jobs for f in fs if f.done() and not f.cancelled()]
        if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
            self.close(stop=True)  # a worker died (e.g. killed): the next batch starts a fresh pool
        return out

    def _outcome(self, req: Request, job: Future[Measurement]) -> Measurement:
        if job.cancelled():
            error = "the repeat was cancelled before it ran (the pool was stopped)"
        elif not job.done():
            error = "the repeat was stopped before it finished (the pool was stopped)"
        else:
            exc = job.exception()
            if exc is None:
                return job.result()
            error = f"{type(exc).__name__}: {exc}"
        log.warning("probe.side_by_side_failed", error=error)
        return Measurement(
            workload=self.workload,
            path=self.path,
            assignment=dict(req.assignment),
            repeats=0,
            duration=self.duration,
            failed=True,
            valid=False,
            error=error,
        )
