"""Fixtures of the CLI tests: run `tuner` in-process or as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from tuner.cli import main

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """cli(*args) -> Result: `tuner ARGS` in this process (fast; same code path as the console script)."""

    def run(*args: object) -> Result:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        finally:
            # main() binds structlog to this test's captured stderr; do not leave later tests logging into it
            structlog.reset_defaults()
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def tuner_process():
    """tuner_process(*args) -> Result: `python3 -m tuner ARGS` as a real subprocess."""

    def run(*args: object, env: dict[str, str] | None = None) -> Result:
        p = subprocess.run(
            [sys.executable, "-m", "tuner", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=60,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run
