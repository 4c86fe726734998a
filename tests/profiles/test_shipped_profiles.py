"""The shipped profiles: every one was produced by `tuner recommend` (evidence, not a hand-written
starting point), and every profile the README or the systemd unit names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuner.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "profiles").glob("*.toml"))


def test_there_are_shipped_profiles():
    assert len(SHIPPED) >= 5


@pytest.mark.parametrize("file", SHIPPED, ids=lambda f: f.name)
def test_each_shipped_profile_carries_the_evidence_of_a_search(file):
    ev = load_profile(file).evidence
    for key in ("verdict", "significant", "objective", "baseline", "recommended", "trials", "machine"):
        assert key in ev, f"{file.name}: no evidence.{key}"
    assert ev["baseline"].get("metrics"), f"{file.name}: no measured baseline"
    # where the baseline came from, and every value of it: the documented stock namespace of the script
    assert "Debian 12" in ev["baseline"]["source"], file.name
    assert ev["baseline"]["settings"]["net.ipv4.tcp_congestion_control"] == "cubic", file.name
    assert ev["baseline"]["settings"]["net.core.rmem_max"] == 212992, file.name
    assert ev["reproduce"] == f"sudo .venv/bin/python bench/regenerate_profiles.py --only {file.stem}"


@pytest.mark.parametrize("doc", ["README.md", "systemd/tuner-apply@.service"])
def test_every_profile_a_document_names_exists(doc):
    """By file (profiles/NAME.toml) or by name (tuner-apply@NAME.service, a profile name in a command)."""
    text = (REPO / doc).read_text()
    named = set(re.findall(r"(?<![\w/])profiles/([\w.-]+)\.toml", text))
    named |= set(re.findall(r"tuner-apply@([a-z0-9][\w.-]*)\.service", text))
    named |= set(re.findall(r"-e profile=([\w.-]+)", text))
    assert named, doc
    for name in named:
        assert (REPO / "profiles" / f"{name}.toml").is_file(), (
            f"{doc} names the profile {name}, which does not exist"
        )
