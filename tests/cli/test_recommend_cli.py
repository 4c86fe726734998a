"""`tuner recommend -o FILE`: an output that cannot be written is refused up front, never a traceback."""

from __future__ import annotations

import pytest

from tuner.cli import build_parser
from tuner.cli.recommend import _save
from tuner.cli.workload_args import path_from_args
from tuner.errors import EnvironmentProblem
from tuner.kinds import spec
from tuner.profiles import Profile
from tuner.workload import NetworkPath, WorkloadKind


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


def _path(*argv: str, search: bool = True) -> NetworkPath:
    args = build_parser().parse_args(["recommend", *argv])
    return path_from_args(args, search=search)


def test_a_bulk_search_without_a_path_measures_over_the_kinds_wan_path_not_a_plain_link():
    # over a plain link the bulk sender saturates a core and the baseline is held back: nothing to judge
    searched = _path("bulk")
    assert searched.rtt > 0 and searched.rate_bps and searched == spec(WorkloadKind.BULK).search_path
    assert _path("bulk", "--loss", "1%").loss == 0.01  # the user's loss on it
    assert _path("bulk", "--rtt", "200ms") == NetworkPath(rtt=0.2)  # a path the user gives is the path
    assert _path("bulk", "--rate", "1gbit").rtt == 0.0
    assert _path("bulk", search=False) == NetworkPath()  # `tuner probe` measures what it is told
    assert _path("rr") == NetworkPath()  # kinds without a search path keep the plain link
