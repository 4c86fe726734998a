"""`tuner apply` / `verify` warn when the target's baseline differs from the one a profile was measured on."""

from __future__ import annotations

import json
import subprocess

import pytest

from tuner.apply.portability import recorded_baseline
from tuner.profiles import Profile, save_profile

pytestmark = pytest.mark.root


def _namespace_algorithm() -> str:
    """cubic where a namespace may select it (a stock host), else another allowed algorithm than bbr."""
    allowed = [
        a for a in open("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read().split() if a != "bbr"
    ]
    if not allowed:
        pytest.skip("no algorithm other than bbr may be selected in a namespace here")
    return "cubic" if "cubic" in allowed else allowed[0]


def _profile(tmp_path):
    profile = Profile(
        name="measured-under-bbr",
        sysctl={"net.core.somaxconn": 1024},
        evidence={
            "significant": True,
            "baseline": {
                "source": "netns stock",
                "settings": {
                    "net.ipv4.tcp_congestion_control": "bbr",
                    "net.core.somaxconn": 4096,  # the profile sets it: not a baseline difference
                    "net.ipv4.tcp_fin_timeout": 60,
                    "TCP_NODELAY": "unset",
                },
            },
        },
    )
    file = tmp_path / "p.toml"
    save_profile(profile, file)
    return file


@pytest.fixture
def cubic_ns(netns):
    algorithm = _namespace_algorithm()
    for setting in (f"net.ipv4.tcp_congestion_control={algorithm}", "net.ipv4.tcp_fin_timeout=60"):
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", setting], check=True)
    return netns, algorithm


def test_apply_warns_with_exit_0_and_a_json_field(cli, cubic_ns, tmp_path):
    ns, algorithm = cubic_ns
    file = _profile(tmp_path)
    r = cli("apply", file, "--netns", ns, "--state-dir", tmp_path / "state", "--json")
    assert r.code == 0, r.err
    differs = json.loads(r.out)["baseline_differs"]
    assert [(d["knob"], d["measured"], d["live"]) for d in differs] == [
        ("net.ipv4.tcp_congestion_control", "bbr", algorithm)
    ]
    assert (
        f"measured with net.ipv4.tcp_congestion_control=bbr, network namespace {ns} has {algorithm}"
        in differs[0]["message"]
        and "re-run tuner recommend" in differs[0]["message"]
    )

    r = cli("apply", file, "--netns", ns, "--state-dir", tmp_path / "state")
    assert r.code == 0 and "warning: measured with net.ipv4.tcp_congestion_control=bbr" in r.err


def test_verify_warns_too_and_keeps_its_exit_code(cli, cubic_ns, tmp_path):
    ns, _ = cubic_ns
    file = _profile(tmp_path)
    r = cli("verify", file, "--netns", ns, "--json")
    assert r.code == 1  # drift: somaxconn is not applied yet
    assert [d["knob"] for d in json.loads(r.out)["baseline_differs"]] == ["net.ipv4.tcp_congestion_control"]


def test_a_profile_without_a_recorded_baseline_has_nothing_to_compare(tmp_path):
    assert recorded_baseline(Profile(name="old", sysctl={"net.core.somaxconn": 1024})) == {}
