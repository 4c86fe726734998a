"""`tuner recommend -o FILE`: an output that cannot be written is refused up front, never a traceback."""

from __future__ import annotations

import pytest

from tuner.cli.recommend import _save
from tuner.errors import EnvironmentProblem
from tuner.profiles import Profile


def test_an_output_in_a_missing_directory_is_refused_before_any_search(cli, tmp_path):
    target = tmp_path / "missing" / "rr.toml"
    r = cli("recommend", "rr", "--budget", "1", "-o", target)
    assert r.code == 2
    assert "does not exist" in r.err and "hint:" in r.err and "Traceback" not in r.err
    assert not target.exists()


def test_a_profile_that_cannot_be_saved_is_an_environment_problem_with_a_hint(tmp_path):
    with pytest.raises(EnvironmentProblem, match="cannot write the profile") as info:
        _save(Profile(name="x"), tmp_path / "missing" / "x.toml")
    assert info.value.hint
