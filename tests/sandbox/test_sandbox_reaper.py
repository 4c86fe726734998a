"""Stale sandboxes of dead owners are reaped; live ones and foreign namespaces never are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sandbox_helpers import REPO, alive, run_next, wait_until

from tuner.adapters.rtnl import create_netns, remove_netns
from tuner.netns import NETNS_DIR, NetnsChild
from tuner.sandbox import reap_stale
from tuner.sandbox.registry import ProcessId, Registry, SandboxRecord, process_start

pytestmark = pytest.mark.root


def test_a_sigkilled_owner_is_reaped_by_the_next_run_and_a_live_sandbox_is_not_touched(holder):
    dead = holder("tun")
    live = holder("tun")
    os.kill(dead.pid, signal.SIGKILL)
    dead.proc.wait()
    # its helpers (delay line, jobs) die with it; its namespaces and record stay until someone reaps
    assert wait_until(lambda: not any(alive(p) for p in dead.helpers), 3)
    assert dead.namespaces_exist() and dead.record_exists()

    result = run_next()
    assert result.returncode == 0, result.stderr

    assert not any((NETNS_DIR / ns).exists() for ns in dead.netns)
    assert not dead.record_exists()
    assert live.namespaces_exist() and live.record_exists()
    assert all(alive(p) for p in live.helpers)
    assert live.proc.poll() is None


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_orphan_tuner_namespaces_of_dead_pids_go_and_everything_else_stays():
    dead = _dead_pid()
    orphan = f"tuner-{dead}-t0"
    occupied = f"tuner-{dead}-t1"  # a process still lives inside: not ours to judge
    mine = f"tuner-{os.getpid()}-tfixture"  # a live owner (this test) without a record
    foreign = f"tunerlike-{dead}-x"  # not a tuner name at all
    names = [orphan, occupied, mine, foreign]
    for name in names:
        create_netns(name)
    inside = NetnsChild(occupied, time.sleep, (60,), die_with_parent=True)
    try:
        target = os.stat(NETNS_DIR / occupied).st_ino
        assert wait_until(lambda: os.stat(f"/proc/{inside.pid}/ns/net").st_ino == target)
        removed = reap_stale()
        assert orphan in removed and not (NETNS_DIR / orphan).exists()
        for name in (occupied, mine, foreign):
            assert (NETNS_DIR / name).exists(), name
    finally:
        inside.kill()
        for name in names:
            if (NETNS_DIR / name).exists():
                remove_netns(name)


def test_a_record_of_a_reused_pid_is_stale_and_its_helpers_are_only_killed_if_still_theirs(tmp_path):
    registry = Registry(tmp_path)
    me = ProcessId.of(os.getpid())
    impostor = ProcessId(os.getpid(), me.start + 1)  # same pid, another process start: dead owner
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        # the record claims the bystander's pid with the wrong start time: it must survive the reap
        wrong_helper = ProcessId(bystander.pid, (process_start(bystander.pid) or 0) + 7)
        registry.write(SandboxRecord(f"tuner-{os.getpid()}-rec0", impostor, (), (wrong_helper,)))
        registry.write(SandboxRecord(f"tuner-{os.getpid()}-rec1", me, ()))
        removed = reap_stale(registry)
        assert removed == [f"tuner-{os.getpid()}-rec0"]
        assert bystander.poll() is None
        assert [r.name for r in registry.records()] == [f"tuner-{os.getpid()}-rec1"]
    finally:
        bystander.kill()
        bystander.wait()


def test_sandbox_gc_on_the_command_line_reaps_and_says_so(holder):
    dead = holder("plain")
    os.kill(dead.pid, signal.SIGKILL)
    dead.proc.wait()
    assert wait_until(lambda: not any(alive(p) for p in dead.helpers), 3)
    out = subprocess.run(
        [sys.executable, "-m", "tuner", "sandbox", "gc"],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert not dead.namespaces_exist() and not dead.record_exists()
    # a concurrent run may have reaped it first; either way gc reports in words
    assert "removed" in out.stdout or "nothing to remove" in out.stdout
