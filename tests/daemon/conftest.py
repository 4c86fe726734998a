"""Fixtures for running the real daemon (`python -m tuner daemon`) in a test-created namespace.

- ``notify``: an AF_UNIX datagram socket the test binds, passed to the daemon as NOTIFY_SOCKET;
- ``run_daemon``: starts the daemon with a configuration text (short intervals, tiny budgets), writes
  nothing outside tmp_path and the test's namespace, and on teardown stops it, its search child's
  process group and any sandbox it left;
- ``workload``: starts one of tests/daemon/daemon_workloads.py inside the namespace.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from daemon_helpers import WORKLOADS, DaemonProcess, NotifyListener


@pytest.fixture
def notify(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


@pytest.fixture
def run_daemon(tmp_path, netns, notify):
    started: list[DaemonProcess] = []

    def start(
        config: str = "",
        *,
        prepare: Callable[[DaemonProcess], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> DaemonProcess:
        d = DaemonProcess(tmp_path, netns, notify, config)
        if prepare is not None:
            prepare(d)
        started.append(d)
        return d.start(env)

    yield start
    for d in started:
        d.cleanup()


@pytest.fixture
def workload(netns):
    procs: list[subprocess.Popen] = []

    def start(kind: str, port: int) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, str(WORKLOADS), kind, str(port)])
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()
