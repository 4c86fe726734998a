"""Logging: journald priorities when stderr is the journal's stream, and the level from the flag (anywhere
on the line), $TUNER_LOG_LEVEL, or the daemon's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tuner.daemon.config import parse_config
from tuner.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _stderr_of(args: list[str], *, journal: bool, env: dict[str, str] | None = None) -> str:
    with tempfile.TemporaryFile() as err:
        st = os.fstat(err.fileno())
        extra = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"} if journal else {}
        base = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "TUNER_LOG_LEVEL")}
        subprocess.run(
            [sys.executable, "-m", "tuner", *args],
            cwd=REPO,
            stderr=err,
            stdout=subprocess.DEVNULL,
            env={**base, **extra, **(env or {})},
            timeout=60,
        )
        err.seek(0)
        return err.read().decode()


BAD = ["probe", "rr", "--set", "TCP_NODELAY=maybe"]


def test_under_journald_every_line_carries_its_priority():
    lines = _stderr_of([*BAD, "--log-level", "debug"], journal=True).splitlines()
    assert lines and all(line[:3] in ("<7>", "<3>") for line in lines), lines
    debug = [line for line in lines if line.startswith("<7>")]
    assert json.loads(debug[0][3:])["event"] == "command.failed"
    assert any(line.startswith("<3>tuner probe: error:") for line in lines)


def test_without_journald_there_is_no_prefix():
    lines = _stderr_of([*BAD, "--log-level", "debug"], journal=False).splitlines()
    assert lines and not any(line.startswith("<") for line in lines)


@pytest.mark.parametrize(
    "args, env, shown",
    [
        (["--log-level", "debug", *BAD], {}, True),  # before the subcommand
        ([*BAD, "--log-level", "debug"], {}, True),  # after it
        (BAD, {"TUNER_LOG_LEVEL": "debug"}, True),  # from the environment
        ([*BAD, "--log-level", "error"], {"TUNER_LOG_LEVEL": "debug"}, False),  # the flag wins
        (BAD, {}, False),  # default: warning
    ],
)
def test_the_log_level_comes_from_the_flag_anywhere_then_the_environment(args, env, shown):
    err = _stderr_of(args, journal=False, env=env)
    assert ('"command.failed"' in err or "command.failed" in err) is shown, err


def test_the_daemon_config_sets_the_level_and_refuses_a_bad_one():
    assert parse_config('log_level = "debug"\n').log_level == "debug"
    assert parse_config(None).log_level == "info"
    with pytest.raises(ConfigError, match="log_level"):
        parse_config('log_level = "loud"\n')
