from __future__ import annotations

import os

import pytest

from tuner.errors import KnobError, NetnsNotFoundError
from tuner.knobs import SysctlTree, get_knob
from tuner.netns import run_in_netns

pytestmark = pytest.mark.root


def _somaxconn_after_write(value: int) -> int:
    tree = SysctlTree()
    tree.write(get_knob("net.core.somaxconn"), value)
    return tree.read(get_knob("net.core.somaxconn"))


def test_a_write_inside_a_namespace_does_not_reach_the_host(netns):
    host_before = SysctlTree().read(get_knob("net.core.somaxconn"))
    assert run_in_netns(netns, _somaxconn_after_write, 77) == 77
    assert SysctlTree().read(get_knob("net.core.somaxconn")) == host_before


def _raise_knob_error():
    raise KnobError("net.core.somaxconn", "too big", value=5, hint="smaller")


def test_errors_come_back_with_their_type_and_fields(netns):
    with pytest.raises(KnobError) as info:
        run_in_netns(netns, _raise_knob_error)
    assert info.value.knob == "net.core.somaxconn" and info.value.value == 5 and info.value.hint == "smaller"


def test_the_parent_stays_in_its_own_namespace(netns):
    before = os.readlink("/proc/self/ns/net")
    child = run_in_netns(netns, os.readlink, "/proc/self/ns/net")
    assert child != before
    assert os.readlink("/proc/self/ns/net") == before


def test_a_missing_namespace_is_reported_by_name():
    with pytest.raises(NetnsNotFoundError, match="tuner-does-not-exist"):
        run_in_netns("tuner-does-not-exist", os.getpid)


def _note_pid_then_sleep(file: str) -> None:
    import time

    with open(file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)


class _Interrupted(Exception):
    pass


def test_an_interrupted_wait_kills_and_reaps_the_child(tmp_path):
    import signal

    pid_file = tmp_path / "pid"

    def interrupt(signum, frame):
        if not pid_file.exists() or not pid_file.read_text():  # not started yet: interrupt a little later
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            return
        raise _Interrupted()

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    pid = None
    try:
        with pytest.raises(_Interrupted):
            run_in_netns(None, _note_pid_then_sleep, str(pid_file))
        pid = int(pid_file.read_text())
        assert not os.path.exists(f"/proc/{pid}"), "the child outlived the interrupted call"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if pid is not None and os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@pytest.mark.parametrize("name", ["../../etc/hostname", "..", ".", "", "a/b"])
def test_a_name_that_is_not_a_plain_namespace_name_is_not_found_rather_than_followed(name):
    with pytest.raises(NetnsNotFoundError):
        run_in_netns(name, os.getpid)


def test_a_child_whose_result_was_read_leaves_no_descriptor_open():
    """A long-lived process (the daemon, a bench) starts thousands of children: each one's pipe and
    pidfd must be closed once its result is read, or select() fails past descriptor 1024."""
    import os as _os

    from tuner.netns import NetnsChild

    before = len(_os.listdir("/proc/self/fd"))
    for _ in range(20):
        child = NetnsChild(None, _os.getpid, (), {})
        assert child.result(timeout=30) == child.pid
    assert len(_os.listdir("/proc/self/fd")) == before
