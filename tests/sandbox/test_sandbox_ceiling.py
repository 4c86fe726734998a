"""Capacity honesty: the emulator's measured ceiling, and a search over a path it cannot carry."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
from sandbox_helpers import REPO

from tuner.sandbox.ceiling import Ceiling


def _ceiling(requested: float, delivered: float, valid: bool = True) -> Ceiling:
    return Ceiling(requested, delivered, "tun", True, 0.5, valid, None if valid else "late", 0.02, 3.0)


def test_a_ceiling_holds_the_rates_it_carried_and_no_more():
    c = _ceiling(20e9, 3e9)
    assert c.holds(1e9) and c.holds(2.7e9)
    assert not c.holds(4e9) and not c.holds(20e9)
    at_rate = _ceiling(400e6, 395e6)
    assert at_rate.holds(400e6) and at_rate.holds(100e6)
    assert not _ceiling(400e6, 208e6).holds(400e6)
    assert not _ceiling(400e6, 399e6, valid=False).holds(400e6)  # an unhealthy run proves nothing


def test_an_invalid_ceiling_names_its_reason_in_one_clause():
    from tuner.sandbox.health import judge

    _, reason = judge(0, 0.0, line_cpu_share=0.91, elapsed=3.0)
    c = Ceiling(20e9, 9e9, "tun", True, 0.91, False, reason, 0.02, 3.0)
    assert c.describe().endswith("; the run was invalid: sandbox: the delay line was saturated")
    assert c.to_dict()["reason"] == reason  # the full explanation stays in the record


@pytest.mark.root
def test_a_search_over_a_path_the_emulator_cannot_carry_says_so_and_claims_nothing(tmp_path):
    profile = tmp_path / "bulk.toml"
    # one knob and one trial: the refusal rests on the path, whatever the candidates (each run over this
    # path is slow, and one the overloaded delay line spoils is run again)
    cmd = [
        sys.executable,
        "-m",
        "tuner",
        "recommend",
        "bulk",
        "--rtt",
        "20ms",
        "--rate",
        "20gbit",
        "--no-knob",
        "net.ipv4.tcp_wmem",
        "--no-knob",
        "net.ipv4.tcp_congestion_control",
        "--budget",
        "1",
        "--duration",
        "0.5",
        "--repeats",
        "1",
        "--json",
        "-o",
        str(profile),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert "cannot carry 20,000 Mbit/s" in done.stderr and "no verdict will rest on it" in done.stderr
    if done.returncode != 0:
        # a busy machine: even the baseline's runs were spoiled; the search said so up front and stops
        # without a profile, which claims nothing either
        assert "the baseline measurement failed" in done.stderr and not profile.exists(), done.stderr[-3000:]
        return
    out = json.loads(done.stdout)
    assert out["significant"] is False and out["assignment"] == {}
    assert out["verdict"].startswith("no verdict: the emulated path could not carry")
    health = tomllib.loads(profile.read_text())["evidence"]["path_health"]
    assert health["emulator_bound"] is True
    assert health["ceiling"]["delivered_bps"] < 0.9 * 20e9
    assert health["requested_rate_bps"] == 20e9
