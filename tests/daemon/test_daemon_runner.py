"""The search child's process handling: events on stdout, stop with grace then SIGKILL of its group."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tuner.daemon.runner import SearchEvent, SearchJob, SearchRunner

JOB = SearchJob(
    service="tcp server :80",
    reason="new service",
    workload={"kind": "rr"},
    path={},
    budget=2,
    time=10.0,
    repeats=1,
    duration=0.1,
    nice=19,
    io_class="idle",
    profile_file="/tmp/x.toml",
    profile_name="x",
)

CHILD = r"""
import json, os, signal, subprocess, sys, time
job = json.loads(sys.stdin.read())
mode = sys.argv[1]
print(json.dumps({"event": "started", "service": job["service"], "nice": os.getpriority(os.PRIO_PROCESS, 0)}), flush=True)
print("not json", flush=True)
if mode == "finish":
    for i in range(3):
        print(json.dumps({"event": "trial", "trial": i + 1, "budget": job["budget"]}), flush=True)
    print(json.dumps({"event": "done", "file": job["profile_file"]}), flush=True)
    sys.exit(0)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(json.dumps({"event": "grandchild", "pid": grandchild.pid}), flush=True)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *a: (grandchild.terminate(), grandchild.wait(), sys.exit(143)))
time.sleep(60)
"""


def _runner(tmp_path: Path, mode: str) -> SearchRunner:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return SearchRunner(JOB, (sys.executable, str(script), mode))


def _wait_events(runner: SearchRunner, kind: str, timeout: float = 10.0) -> list[SearchEvent]:
    seen: list[SearchEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += runner.read_events()
        if any(e.kind == kind for e in seen):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"no {kind} event; got {seen}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_job_round_trips_as_json():
    assert SearchJob.from_json(JOB.to_json()) == JOB


def test_events_are_read_without_blocking_and_junk_lines_skipped(tmp_path):
    r = _runner(tmp_path, "finish")
    r.start()
    events = _wait_events(r, "done")
    assert [e.kind for e in events] == ["started", "trial", "trial", "trial", "done"]
    assert events[0].data["service"] == JOB.service
    deadline = time.monotonic() + 5
    while r.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.poll() == 0
    r.close()


def test_child_runs_without_the_daemons_notify_socket(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    script = tmp_path / "env.py"
    script.write_text(
        "import json, os, sys; sys.stdin.read(); "
        "print(json.dumps({'event': 'env', 'notify': os.environ.get('NOTIFY_SOCKET')}))"
    )
    r = SearchRunner(JOB, (sys.executable, str(script)))
    r.start()
    [event] = [e for e in _wait_events(r, "env") if e.kind == "env"]
    assert event.data["notify"] is None
    r.stop(2.0)
    r.close()


def test_stop_lets_a_cooperative_child_clean_up(tmp_path):
    r = _runner(tmp_path, "cooperative")
    r.start()
    grandchild = next(e for e in _wait_events(r, "grandchild") if e.kind == "grandchild").data["pid"]
    t0 = time.monotonic()
    r.stop(5.0)
    assert time.monotonic() - t0 < 4.0
    assert r.poll() == 143 and not r.killed
    assert not _alive(grandchild)
    r.close()


def test_stop_kills_a_stubborn_child_and_its_whole_group_after_the_grace(tmp_path):
    r = _runner(tmp_path, "stubborn")
    r.start()
    grandchild = next(e for e in _wait_events(r, "grandchild") if e.kind == "grandchild").data["pid"]
    t0 = time.monotonic()
    r.stop(1.0)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 5.0
    assert r.killed and r.poll() == -9
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    r.close()


def test_a_child_that_exits_before_reading_its_job_is_reaped_and_its_pipes_closed():
    big = replace(
        JOB, workload={"kind": "rr", "pad": "x" * (1 << 18)}
    )  # more than a pipe holds: the write waits
    r = SearchRunner(big, (sys.executable, "-c", "import os; os.close(0)"))
    with pytest.raises(BrokenPipeError):
        r.start()
    assert r.proc is not None and r.proc.returncode is not None, "the child was left unreaped"
    assert r.proc.stdout.closed and r.proc.stdin.closed


DAEMON = r"""
import sys
from tuner.daemon.runner import SearchJob, SearchRunner
job = SearchJob(service="s", reason="r", workload={"kind": "rr"}, path={}, budget=1, time=1.0, repeats=1,
                duration=0.1, nice=19, io_class="idle", profile_file="/tmp/x.toml", profile_name="x")
r = SearchRunner(job, (sys.executable, "-c", "import sys, time; sys.stdin.read(); time.sleep(60)"))
print("child", r.start(), flush=True)
import time; time.sleep(60)
"""


def test_the_search_child_stops_when_the_daemon_is_killed(tmp_path):
    import signal
    import subprocess

    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    daemon = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(next(line for line in daemon.stdout if line.startswith("child ")).split()[1])
        assert _alive(child)
        daemon.kill()
        daemon.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "an orphaned search kept running after its daemon was killed"
    finally:
        daemon.kill()
        daemon.wait()
        daemon.stdout.close()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)
