from __future__ import annotations

import os
import signal
import time

import pytest
from sandbox_helpers import alive, wait_until

from tuner.errors import KnobError
from tuner.netns import ChildFailed, ChildTimeout
from tuner.sandbox import Sandbox, Side

pytestmark = pytest.mark.root


def _netns_inode() -> str:
    return os.readlink("/proc/self/ns/net")


def _raise():
    raise KnobError("net.core.somaxconn", "too big", value=5, hint="smaller")


def _closure_result(factor: int):
    return lambda x: x * factor  # not picklable: only results cross the pipe


def test_code_runs_in_each_namespace_while_the_parent_stays_home():
    home = _netns_inode()
    with Sandbox() as sb:
        client, server = sb.run(Side.CLIENT, _netns_inode), sb.run(Side.SERVER, _netns_inode)
        assert len({home, client, server}) == 3
        captured = 21
        assert sb.run(Side.CLIENT, lambda: captured * 2) == 42  # forked: closures need no pickling
    assert _netns_inode() == home


def test_an_exception_comes_back_with_its_type_and_fields():
    with Sandbox() as sb:
        with pytest.raises(KnobError) as info:
            sb.run(Side.SERVER, _raise)
        assert info.value.value == 5 and info.value.hint == "smaller"
        with pytest.raises(ChildFailed):
            sb.run(Side.SERVER, _closure_result, 3)


def test_a_job_runs_in_the_background_and_reports_its_result():
    with Sandbox() as sb:
        job = sb.spawn(Side.SERVER, lambda: (time.sleep(0.2), _netns_inode())[1])
        assert job.alive()
        with pytest.raises(ChildTimeout):
            job.result(timeout=0.01)
        assert job.result(timeout=5) == sb.run(Side.SERVER, _netns_inode)
        assert not job.alive()


def test_a_job_that_dies_raises_child_failed_and_terminate_stops_a_job():
    with Sandbox() as sb:
        dying = sb.spawn(Side.CLIENT, lambda: os.kill(os.getpid(), signal.SIGKILL))
        with pytest.raises(ChildFailed, match="signal 9"):
            dying.result(5)
        sleeper = sb.spawn(Side.CLIENT, time.sleep, 60)
        sleeper.terminate()
        assert not alive(sleeper.pid)
        with pytest.raises(ChildFailed, match="signal 15"):
            sleeper.result(1)


def test_every_job_is_killed_and_reaped_when_the_sandbox_exits():
    with Sandbox() as sb:
        jobs = [sb.spawn(side, time.sleep, 60) for side in Side]
        assert all(j.alive() for j in jobs)
        pids = [j.pid for j in jobs]
    assert not any(alive(p) for p in pids)


def test_a_result_sent_before_terminate_is_kept():
    with Sandbox() as sb:
        job = sb.spawn(Side.CLIENT, lambda: 7)
        deadline = time.monotonic() + 5
        while job.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        job.terminate()
        assert job.result(1) == 7


def _fork_a_grandchild() -> int:
    pid = os.fork()
    if pid == 0:  # lives on after the job returns, and ignores the polite signals
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
        os._exit(0)
    return pid


def test_processes_a_job_left_in_the_namespace_go_with_the_sandbox():
    with Sandbox() as sb:
        grandchild = sb.run(Side.SERVER, _fork_a_grandchild)
        assert alive(grandchild)
    assert wait_until(lambda: not alive(grandchild), 2)


def test_a_large_result_arrives_whole_from_a_job_and_from_run():
    with Sandbox() as sb:
        job = sb.spawn(Side.CLIENT, lambda: bytes(range(256)) * 8192)  # 2 MiB: far more than a pipe holds
        assert sb.run(Side.SERVER, lambda: b"y" * (3 << 20)) == b"y" * (3 << 20)
        assert job.result(10) == bytes(range(256)) * 8192


def _note_pid_then_sleep(file: str) -> None:
    with open(file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)


class _Interrupted(Exception):
    pass


def test_an_interrupted_run_kills_and_reaps_its_child_while_the_sandbox_stays_open(tmp_path):
    pid_file = tmp_path / "pid"

    def interrupt(signum, frame):
        if not pid_file.exists() or not pid_file.read_text():  # not started yet: a little later
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            return
        raise _Interrupted()

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        with Sandbox() as sb:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(_Interrupted):
                sb.run(Side.SERVER, _note_pid_then_sleep, str(pid_file))
            pid = int(pid_file.read_text())
            assert not os.path.exists(f"/proc/{pid}"), "the run's child outlived the interrupted call"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
