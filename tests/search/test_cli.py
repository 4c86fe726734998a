"""`tuner recommend` input errors: exit 2 with a hint, no traceback, before any sandbox is built."""

from __future__ import annotations

import pytest

from tuner.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["recommend", "rr", "--no-knob", "net.core.somaxconn"], "not in the rr search space"),
        (["recommend", "rr", "--knob", "TCP_NODELAYY"], "is not a knob tuner knows"),
        (["recommend", "rr", "--knob", "net.ipv4.tcp_mem"], "cannot be searched"),
        (["recommend", "rr", "--objective", "latency"], "unknown metric"),
        (["recommend", "rr", "--resume"], "--resume needs --journal"),
        (["recommend", "rr", "--budget", "0"], "at least one trial"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_a_hint(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "hint:" in err and "Traceback" not in err


def test_the_help_names_the_default_knobs_and_the_flags():
    with pytest.raises(SystemExit) as info:
        main(["recommend", "--help"])
    assert info.value.code == 0
