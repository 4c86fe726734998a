"""`tuner recommend` as a new user tries it: one repeat per side is not a claim, however big the gap."""

from __future__ import annotations

import json

import pytest


@pytest.mark.root
def test_recommend_rr_with_one_repeat_makes_no_significance_claim(cli, nagle_fix_only):
    # the Nagle trap and its one fix: a gap of ~1000x at any window length, and nothing to simplify
    r = cli(
        "recommend",
        "rr",
        "--write-pattern",
        "split",
        *nagle_fix_only,
        "--budget",
        "2",
        "--repeats",
        "1",
        "--duration",
        "0.1s",
        "--json",
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["significant"] is False
    assert "not enough samples to claim" in out["verdict"] and "--repeats 1" in out["verdict"]
    assert out["assignment"] == {}
    assert "significant = false" in out["profile"]
    assert all(not m["significant"] for m in out["metrics"].values())


def test_a_confirmation_cap_below_the_minimum_is_refused(cli):
    r = cli("recommend", "rr", "--max-repeats", "2")
    assert r.code == 2 and "at least 5" in r.err and "Traceback" not in r.err
