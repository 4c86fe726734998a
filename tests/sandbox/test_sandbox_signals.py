"""A process holding a sandbox cleans up when it is interrupted or terminated."""

from __future__ import annotations

import signal

import pytest
from sandbox_helpers import alive, wait_until

pytestmark = pytest.mark.root


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signalled_owner_removes_its_sandbox_before_it_exits(holder, sig):
    h = holder("tun")
    assert h.namespaces_exist() and h.record_exists() and all(alive(p) for p in h.helpers)
    status = h.signal(sig)
    # SIGINT: KeyboardInterrupt unwinds, Python then dies by the signal; SIGTERM: SystemExit(128 + 15)
    assert status == (-sig if sig == signal.SIGINT else 128 + sig), status
    assert not h.namespaces_exist()
    assert not h.record_exists()
    assert wait_until(lambda: not any(alive(p) for p in h.helpers), 2)
