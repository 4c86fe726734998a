"""Measurements side by side: each repeat in a sandbox of its own, in worker processes, pooled per request;
stopping the pool removes every sandbox its workers built."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tuner.kinds import DEFAULT_WORKLOADS
from tuner.netns import NETNS_DIR
from tuner.probe.side_by_side import Request, SideBySide
from tuner.workload import NetworkPath, WorkloadKind

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


def _sandboxes(owners: set[int]) -> set[str]:
    """The tuner namespaces of these processes (the workers name theirs after their own PIDs); another
    tuner run on the machine, whose sandboxes come and go, is not looked at."""
    if not NETNS_DIR.exists():
        return set()
    return {p.name for pid in owners for p in NETNS_DIR.glob(f"tuner-{pid}-*")}


def _workers(children: set) -> set[int]:
    """PIDs of this process's multiprocessing children that are not in ``children`` (a pool's workers)."""
    return {p.pid for p in multiprocessing.active_children() if p not in children and p.pid is not None}


def _poll(check, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_each_request_gets_its_repeats_measured_at_once_and_pooled():
    children = set(multiprocessing.active_children())
    rr = DEFAULT_WORKLOADS[WorkloadKind.RR]
    with SideBySide(rr, NetworkPath(rtt=0.002), 0.3, None, workers=3) as pool:
        plain, nodelay = pool.measure([Request({}, 2), Request({"TCP_NODELAY": True}, 1)])
        workers = _workers(children)  # still running: the pool ends with the block
    assert workers, "no worker process measured the repeats"
    assert not plain.failed and not nodelay.failed
    assert plain.repeats == 2 and len(plain.metrics["tps"].samples) == 2
    assert nodelay.repeats == 1 and nodelay.assignment == {"TCP_NODELAY": True}
    assert any("side by side" in n for n in plain.notes)
    assert plain.health and plain.backend == "tun"  # each repeat's path health, merged
    assert _poll(lambda: not _sandboxes(workers)), "a worker left a sandbox behind"


def test_stopping_the_pool_mid_measurement_removes_every_sandbox_its_workers_built():
    keepalive = DEFAULT_WORKLOADS[WorkloadKind.KEEPALIVE]  # a repeat waits 18 s for a dead peer
    children = set(multiprocessing.active_children())
    pool = SideBySide(keepalive, NetworkPath(), 0.5, None, workers=2)
    out: list = []
    # more repeats than workers: some wait in the executor's queue when the pool is stopped, and the
    # measurement returns (failed) rather than wait for repeats that will not come
    worker = threading.Thread(target=lambda: out.extend(pool.measure([Request({}, 6)])), daemon=True)
    worker.start()
    workers: set[int] = set()

    def built() -> bool:
        workers.update(_workers(children))  # the pool's workers, while they run
        return len(_sandboxes(workers)) >= 4  # two sandboxes, two namespaces each

    assert _poll(built), "the workers never built their sandboxes"
    pool.close(stop=True)
    worker.join(timeout=60.0)
    assert not worker.is_alive()
    assert out and out[0].failed  # its repeats were stopped, not measured
    # the stopped workers are gone: a queued repeat they took ended before it built a sandbox
    assert not [p for p in multiprocessing.active_children() if p not in children and p.is_alive()]
    assert _poll(lambda: not _sandboxes(workers)), "a stopped worker left its sandbox behind"


_LOGGING_CALLER = """
from tuner.kinds import DEFAULT_WORKLOADS
from tuner.logs import configure
from tuner.probe.side_by_side import Request, SideBySide
from tuner.workload import NetworkPath, WorkloadKind

if __name__ == "__main__":
    configure(level="info", json=True)
    rr = DEFAULT_WORKLOADS[WorkloadKind.RR]
    with SideBySide(rr, NetworkPath(rtt=0.002), 0.3, None, workers=2) as pool:
        (m,) = pool.measure([Request({}, 2)])
    assert not m.failed, m.error
"""


def test_the_workers_log_at_their_callers_level_and_format(tmp_path):
    # a process of its own: the workers write to the stderr their caller had when its first pool started
    # (they are forked from a fork server started then), which pytest swaps per test
    script = tmp_path / "caller.py"
    script.write_text(_LOGGING_CALLER)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the worker's own events (it builds the sandbox) reach the caller's stderr as JSON at info level
    lines = proc.stderr.splitlines()
    assert any(line.startswith("{") and '"sandbox.created"' in line for line in lines), proc.stderr[-2000:]
