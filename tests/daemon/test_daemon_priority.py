"""Lowering CPU and I/O priority in a real child process."""

from __future__ import annotations

import os
import subprocess
import sys

from tuner.daemon.priority import io_priority


def _child(nice: int, io_class: str) -> tuple[int, tuple[str, int]]:
    code = (
        "import os, sys; from tuner.daemon.priority import lower_priority, io_priority; "
        f"lower_priority({nice}, {io_class!r}); "
        "print(os.getpriority(os.PRIO_PROCESS, 0), *io_priority())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), (out[1], int(out[2]))


def test_child_lowers_itself_to_idle_io_and_nice_19():
    nice, io = _child(19, "idle")
    assert nice == 19 and io == ("idle", 0)


def test_best_effort_takes_its_lowest_level():
    nice, io = _child(10, "best-effort")
    assert nice == max(10, os.getpriority(os.PRIO_PROCESS, 0)) and io == ("best-effort", 7)


def test_priority_is_never_raised():
    code = (
        "import os; os.nice(15); from tuner.daemon.priority import lower_priority; lower_priority(5, 'idle'); "
        "print(os.getpriority(os.PRIO_PROCESS, 0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) >= 15


def test_io_priority_of_this_process_is_readable():
    cls, level = io_priority()
    assert cls in ("none", "best-effort", "idle", "realtime") and 0 <= level <= 7
