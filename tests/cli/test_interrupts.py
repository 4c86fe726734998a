"""Ctrl-C and SIGTERM stop a search or a probe at once: exit 130 / 143, every sandbox gone, the journal
resumable. The signal goes to the whole process group, as a terminal's Ctrl-C does, so the probe's own
children are hit too (their failure must not be reported instead of the interrupt)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tuner.search.journal import SearchJournal

pytestmark = [pytest.mark.root, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
STOP_BOUND = 20.0  # generous: the bug this guards against ran on for ~100 s; typical is < 1 s


def _namespaces_of(pid: int) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"tuner-{pid}-")]


def _measuring(pid: int) -> bool:
    """A probe's server and client children run (on a plain path the sandbox has no other children)."""
    try:
        return len(psutil.Process(pid).children()) >= 2
    except psutil.NoSuchProcess:
        return False


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tuner", *args],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(what, deadline: float = 120.0) -> None:
    end = time.monotonic() + deadline
    while not what():
        assert time.monotonic() < end, "the run never reached the state the test interrupts"
        time.sleep(0.05)


def _signal_group(proc: subprocess.Popen, sig: int) -> tuple[int, float, str]:
    t0 = time.monotonic()
    os.killpg(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, time.monotonic() - t0, err


def _journal_lines(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    except (FileNotFoundError, ValueError):
        return []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_group_stops_a_search_and_leaves_a_resumable_journal(tmp_path, sig, code):
    journal = tmp_path / "search.jsonl"
    # single writes and one repeat: no Nagle wait in the baseline (split writes stretch each of its
    # repeats to 4x the window), so the search reaches its first trial in a few seconds
    proc = _start(
        "recommend",
        "rr",
        "--write-pattern",
        "single",
        "--repeats",
        "1",
        "--budget",
        "6",
        "--duration",
        "0.5s",
        "--journal",
        str(journal),
    )
    # evidence that the search runs trials: the baseline is journaled, and the next trial is being measured
    _wait_for(lambda: any(r.get("type") == "trial" for r in _journal_lines(journal)) and _measuring(proc.pid))
    rc, seconds, err = _signal_group(proc, sig)
    assert rc == code, err
    assert seconds < STOP_BOUND, f"took {seconds:.1f} s to stop"
    assert "Traceback" not in err
    assert _namespaces_of(proc.pid) == []
    header = {k: v for k, v in _journal_lines(journal)[0].items() if k not in ("type", "version")}
    resumed = SearchJournal.resume(journal, header)
    assert resumed.records and resumed.records[0]["role"] == "baseline"


def test_ctrl_c_during_a_probe_exits_130_not_server_crashed(tmp_path):
    proc = _start("probe", "rr", "--duration", "5s", "--repeats", "3")
    _wait_for(lambda: _measuring(proc.pid))  # into the measurement, with server and client children running
    rc, seconds, err = _signal_group(proc, signal.SIGINT)
    assert rc == 130, err
    assert "crashed" not in err.split("interrupted")[-1]
    assert "interrupted" in err
    assert seconds < STOP_BOUND
    assert _namespaces_of(proc.pid) == []
