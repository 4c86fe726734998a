"""`tuner knobs`: the catalogue with live values, on the host (read only) or inside a test namespace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tuner.knobs import CATALOGUE, SysctlTree, get_knob
from tuner.netns import run_in_netns


def _somaxconn_to(value: int) -> None:
    SysctlTree().write(get_knob("net.core.somaxconn"), value)


def test_the_table_has_one_row_per_knob_with_its_scope(cli):
    r = cli("knobs")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["KNOB", "SCOPE", "LIVE", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == set(CATALOGUE)
    assert rows["TCP_NODELAY"].split()[1] == "socket" and "(set by the application)" in rows["TCP_NODELAY"]
    somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    assert rows["net.core.somaxconn"].split()[1:3] == ["netns", somaxconn]


def test_json_lists_every_knob_with_its_live_value(tuner_process):
    r = tuner_process("knobs", "--json")
    assert r.code == 0, r.err
    data = {k["name"]: k for k in json.loads(r.out)}
    assert set(data) == set(CATALOGUE)
    assert data["net.core.somaxconn"]["live"] == int(Path("/proc/sys/net/core/somaxconn").read_text())
    rmem = [int(v) for v in Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()]
    assert data["net.ipv4.tcp_rmem"]["live"] == rmem and data["net.ipv4.tcp_rmem"]["scope"] == "netns"
    assert data["net.core.rmem_max"]["scope"] == "host"
    assert data["SO_RCVBUF"]["kind"] == "sockopt" and data["SO_RCVBUF"]["live"] is None
    assert all(k["available"] for k in data.values() if k["kind"] != "sysctl")


@pytest.mark.root
def test_netns_shows_the_namespace_values_and_what_it_lacks(netns, cli):
    run_in_netns(netns, _somaxconn_to, 77)
    data = {k["name"]: k for k in json.loads(cli("knobs", "--netns", netns, "--json").out)}
    assert data["net.core.somaxconn"]["live"] == 77
    absent = [n for n, k in data.items() if CATALOGUE[n].is_sysctl and not k["available"]]
    assert "net.core.netdev_max_backlog" in absent and "net.ipv4.tcp_mem" in absent
    assert data["net.core.netdev_max_backlog"]["live"] is None
    table = cli("knobs", "--netns", netns).out
    assert any(
        line.startswith("net.core.netdev_max_backlog") and "not available" in line
        for line in table.splitlines()
    )
    assert any(line.split()[:3] == ["net.core.somaxconn", "netns", "77"] for line in table.splitlines())


@pytest.mark.root
def test_an_unknown_namespace_exits_3(cli):
    r = cli("knobs", "--netns", f"tuner-{os.getpid()}-missing")
    assert r.code == 3 and "does not exist" in r.err and "ip netns list" in r.err
