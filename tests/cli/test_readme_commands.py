"""The README's command table names only flags the CLI has, each with the meaning the row gives it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tuner.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    out: set[str] = set()
    for action in parser._actions:
        out.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                out |= _options(child)
    return out


def _command_rows() -> list[str]:
    rows = []
    for line in README.read_text().splitlines():
        if line.startswith("| `tuner "):
            rows += re.findall(r"`(tuner [^`]*)`", line.split(" | ")[0])
    return rows


def _flags(usage: str) -> list[str]:
    return re.findall(r"(?<![\w-])--?[a-z][a-z-]*", usage)


def test_every_flag_in_the_readme_command_table_exists():
    verbs = _subparsers(build_parser())
    rows = _command_rows()
    assert len(rows) >= 10
    for usage in rows:
        verb = usage.split()[1]
        assert verb in verbs, usage
        missing = [f for f in _flags(usage) if f not in _options(verbs[verb])]
        assert not missing, f"{usage}: {missing}"


def test_the_recommend_auto_row_only_shows_flags_that_act_with_auto():
    recommend = _subparsers(build_parser())["recommend"]
    group = next(
        g for g in recommend._action_groups if any("--auto" in a.option_strings for a in g._group_actions)
    )
    auto_flags = {o for a in group._group_actions for o in a.option_strings} | {"-o", "--output", "--json"}
    [usage] = [u for u in _command_rows() if u.startswith("tuner recommend --auto")]
    assert set(_flags(usage)) <= auto_flags, (
        usage
    )  # e.g. --duration is a probe's repeat length, not observing
