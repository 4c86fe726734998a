"""Shared fixtures: root detection, test-owned network namespaces, a fake /proc/sys tree.

Every namespace a test creates is named ``tuner-<pid>-t<n>`` and deleted in the fixture's
finalizer, whatever the test's outcome.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from tuner.knobs import CATALOGUE

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root for network namespaces")
_counter = itertools.count()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root for network namespaces"))


@pytest.fixture(scope="session")
def nagle_fix_only() -> tuple[str, ...]:
    """`tuner recommend rr` flags that search the Nagle trap's one fix (TCP_NODELAY) alone: for tests of a
    search's path to a verdict, a profile or a report, which more knobs only lengthen (trials,
    simplification and confirmation rounds)."""
    return ("--no-knob", "TCP_QUICKACK", "--no-knob", "SO_SNDBUF", "--no-knob", "SO_RCVBUF")


@pytest.fixture
def netns():
    """A fresh, empty network namespace with loopback up; deleted afterwards."""
    name = f"tuner-{os.getpid()}-t{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# Values as a stock kernel shows them; a knob missing here is "not available" in the fake tree.
FAKE_DEFAULTS = {
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_rmem": "4096\t131072\t6291456",
    "net.ipv4.tcp_wmem": "4096\t16384\t4194304",
    "net.ipv4.tcp_max_syn_backlog": "512",
    "net.ipv4.tcp_keepalive_time": "7200",
    "net.ipv4.tcp_keepalive_intvl": "75",
    "net.ipv4.tcp_keepalive_probes": "9",
    "net.ipv4.tcp_congestion_control": "cubic",
    "net.ipv4.tcp_available_congestion_control": "reno cubic",
    "net.ipv4.tcp_allowed_congestion_control": "reno cubic",
    "net.ipv4.tcp_notsent_lowat": "4294967295",
    "net.ipv4.tcp_slow_start_after_idle": "1",
    "net.ipv4.tcp_fastopen": "1",
    "net.ipv4.tcp_fin_timeout": "60",
    "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.tcp_mtu_probing": "0",
    "net.ipv4.ip_local_port_range": "32768\t60999",
    "net.ipv4.tcp_no_metrics_save": "0",
    "net.core.rmem_max": "212992",
    "net.core.wmem_max": "212992",
    "net.core.rmem_default": "212992",
    "net.core.wmem_default": "212992",
    "net.core.netdev_max_backlog": "1000",
    "net.ipv4.tcp_mem": "88209\t117614\t176418",
    "net.ipv4.udp_mem": "176421\t235229\t352842",
}


@pytest.fixture
def fake_proc_sys(tmp_path: Path) -> Path:
    """A fake /proc/sys with every catalogue sysctl at stock values."""
    root = tmp_path / "proc_sys"
    for name, text in FAKE_DEFAULTS.items():
        path = root.joinpath(*name.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    assert all(n in FAKE_DEFAULTS for n, k in CATALOGUE.items() if k.is_sysctl)
    return root
