"""Helpers of the probe tests: what a probe may leave behind (processes, namespaces)."""

from __future__ import annotations

import os
from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from tuner.netns import NETNS_DIR
from tuner.probe.side_by_side import start_fork_server


def child_pids(parent: int | None = None) -> set[int]:
    """PIDs of the live (not zombie-reaped) children of ``parent`` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.add(int(stat.parent.name))
    return pids


def own_namespaces() -> set[str]:
    """Network namespaces named after this test process (sandboxes and test namespaces)."""
    prefix = f"tuner-{os.getpid()}-"
    return {p.name for p in NETNS_DIR.glob(prefix + "*")} if NETNS_DIR.exists() else set()


@pytest.fixture
def leaves_nothing_behind():
    """Asserts after the test that no child process and no namespace of this process was left.

    Python's own multiprocessing resource tracker and the fork server side-by-side workers come from
    (each started once, by the first pool, and kept for the life of the interpreter) are not a probe's:
    they are started first so that they count as before."""
    resource_tracker.ensure_running()
    start_fork_server()
    procs_before, ns_before = child_pids(), own_namespaces()
    yield
    assert child_pids() - procs_before == set(), "a probe left a process running"
    assert own_namespaces() - ns_before == set(), "a probe left a namespace behind"
