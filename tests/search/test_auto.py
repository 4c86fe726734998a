"""`tuner recommend --auto`: observe a namespace, search each service with symptoms, write its profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.profiles import load_profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "observe"))
import observe_scenarios as sc  # the observe tests' real workloads

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def _auto(
    netns: str, out: Path, *extra: str, observe: str = "2s", as_json: bool = True
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tuner",
            "recommend",
            "--auto",
            "--netns",
            netns,
            "--observe",
            observe,
            "-o",
            str(out),
            *(["--json"] if as_json else []),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_a_nagle_bound_service_gets_a_profile_that_turns_nagle_off(netns, tmp_path):
    with sc.nagle_rr(netns, nodelay=False, connections=2):
        done = _auto(netns, tmp_path, "--budget", "3", "--sampler", "grid", "--no-knob", "TCP_QUICKACK")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results, "a Nagle-bound service must be searched"
    nagle = [r for r in results if r["assignment"].get("TCP_NODELAY") is True]
    assert nagle, [
        (r, load_profile(Path(r["profile_file"])).evidence.get("observed")) if r.get("profile_file") else r
        for r in results
    ]
    profile = load_profile(Path(nagle[0]["profile_file"]))
    assert profile.socket["TCP_NODELAY"] is True
    observed = profile.evidence["observed"]
    assert "nagle-delayed-ack" in {s["name"] for s in observed["symptoms"]}
    # the search started from the observed namespace's own settings, not this host's
    assert profile.evidence["baseline"]["source"] == f"netns {netns}"


def test_a_quiet_namespace_needs_no_tuning_and_writes_nothing(netns, tmp_path):
    out = tmp_path / "profiles"
    done = _auto(netns, out, observe="1s", as_json=False)
    assert done.returncode == 0, done.stderr
    assert "nothing needs tuning" in done.stdout
    assert not out.exists()


def test_auto_refuses_a_named_workload_too(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tuner", "recommend", "rr", "--auto"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--auto observes the workload" in done.stderr
