"""Fixtures for sandbox tests (the helpers themselves live in sandbox_helpers.py)."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from sandbox_helpers import Holder, Line, alive, children, host_links, own_namespaces, own_records

from tuner.netns import NETNS_DIR
from tuner.sandbox.delayline import LineParams


@pytest.fixture
def host_snapshot():
    """What the host looks like before the test; the test compares with ``take()`` afterwards."""

    def take():
        return {
            "netns": own_namespaces(),
            "records": own_records(),
            "links": host_links(),
            "children": children(),
        }

    return take


@pytest.fixture
def holder():
    """Factory of sandbox-holding child processes; whatever they leave is removed afterwards."""
    made: list[Holder] = []

    def make(kind: str = "tun") -> Holder:
        h = Holder(kind)
        made.append(h)
        return h

    yield make
    from tuner.adapters.rtnl import remove_netns
    from tuner.sandbox.registry import Registry

    for h in made:
        if h.proc.poll() is None:
            h.proc.send_signal(signal.SIGKILL)
            h.proc.wait()
        for pid in h.helpers:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ns in h.netns:
            if (NETNS_DIR / ns).exists():
                remove_netns(ns)
        Registry().remove(h.name)
        h.proc.stdout.close()
        h.proc.stderr.close()


@pytest.fixture
def line_factory():
    lines: list[Line] = []

    def make(**kw) -> Line:
        params = LineParams(**{"delay": 0.0, "rate_bps": 1e9, "loss": 0.0, "queue_packets": 1000, **kw})
        lines.append(Line(params))
        return lines[-1]

    yield make
    for line in lines:
        line.close()
