"""`tuner doctor` and `tuner sandbox list` tell the truth about this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sandbox_helpers import REPO

from tuner.sandbox import netem_available
from tuner.sandbox.doctor import TCP_INFO_FIELDS, tcp_info_length

pytestmark = pytest.mark.root


def _tuner(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "tuner", *args], capture_output=True, text=True, timeout=60, env=env, cwd=REPO
    )


def test_doctor_reports_what_this_machine_really_has():
    out = _tuner("doctor", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ready"] is True
    assert checks["root"]["status"] == "ok" and checks["namespaces"]["status"] == "ok"
    has_netem = netem_available()
    assert (checks["netem"]["status"] == "ok") is has_netem
    if not has_netem:
        assert "delay line" in checks["netem"]["meaning"] and "sch_netem" in checks["netem"]["fix"]
    assert checks["tun"]["status"] == ("ok" if os.path.exists("/dev/net/tun") else "missing")
    assert checks["path emulation"]["status"] == "ok"
    length = tcp_info_length()
    for name, offset, size, _ in TCP_INFO_FIELDS:
        assert (name in checks["tcp_info"]["found"]) is (length >= offset + size)
    available = open("/proc/sys/net/ipv4/tcp_available_congestion_control").read().split()
    assert all(a in checks["congestion control"]["found"] for a in available)
    firewall = checks["nftables/iptables"]
    assert ("neither" in firewall["found"]) is not any(
        os.access(os.path.join(d, t), os.X_OK)
        for d in os.environ["PATH"].split(":")
        for t in ("nft", "iptables")
    )


def test_doctor_prints_one_screen_for_people():
    out = _tuner("doctor")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) <= 40
    assert lines[-1].startswith("ready")


def test_sandbox_list_shows_a_live_sandbox_and_its_owner(holder):
    h = holder("plain")
    out = _tuner("sandbox", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows[h.name]["owner"] == h.pid and rows[h.name]["owner_alive"] is True
    assert sorted(rows[h.name]["netns"]) == sorted(h.netns)
