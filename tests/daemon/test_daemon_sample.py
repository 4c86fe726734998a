"""The daemon's observation sources: a namespace that is gone fails each sample without leaking."""

from __future__ import annotations

import os

import pytest

from tuner.daemon.sample import NetnsSource
from tuner.errors import NetnsNotFoundError


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_missing_namespace_fails_every_sample_without_leaking_file_descriptors():
    source = NetnsSource(f"tuner-{os.getpid()}-gone")
    before = _open_fds()
    for _ in range(20):  # the daemon retries at every interval
        with pytest.raises(NetnsNotFoundError):
            source.sample()
    source.close()
    assert _open_fds() == before
