"""KNOB=VALUE settings as typed on a command line."""

from __future__ import annotations

import pytest

from tuner.errors import InputError, KnobError
from tuner.knobs import get_knob
from tuner.knobs.parse import parse_setting, parse_settings, parse_value


def test_every_form_people_type_becomes_the_canonical_value():
    assert parse_settings(
        [
            "TCP_NODELAY=on",
            "SO_KEEPALIVE=false",
            "net.ipv4.tcp_rmem=4096,131072,6291456",
            "net.ipv4.tcp_wmem=4096 16384 4MiB",
            "SO_RCVBUF=64KiB",
            "TCP_KEEPIDLE=2m",
            "TCP_USER_TIMEOUT=30s",
            "net.ipv4.tcp_tw_reuse=loopback only",
            "net.ipv4.tcp_congestion_control=bbr",
            "backlog=8",
        ]
    ) == {
        "TCP_NODELAY": True,
        "SO_KEEPALIVE": False,
        "net.ipv4.tcp_rmem": (4096, 131072, 6291456),
        "net.ipv4.tcp_wmem": (4096, 16384, 4194304),
        "SO_RCVBUF": 65536,
        "TCP_KEEPIDLE": 120,
        "TCP_USER_TIMEOUT": 30000,
        "net.ipv4.tcp_tw_reuse": 2,
        "net.ipv4.tcp_congestion_control": "bbr",
        "backlog": 8,
    }


@pytest.mark.parametrize(
    "text, knob",
    [
        ("NOPE=1", "NOPE"),
        ("SO_RCVBUF=lots", "SO_RCVBUF"),
        ("TCP_NODELAY=maybe", "TCP_NODELAY"),
        ("net.ipv4.tcp_rmem=1,2", "net.ipv4.tcp_rmem"),
        ("net.ipv4.tcp_rmem=3,2,1", "net.ipv4.tcp_rmem"),
        ("TCP_KEEPIDLE=1.5s", "TCP_KEEPIDLE"),
        ("net.core.somaxconn=0", "net.core.somaxconn"),
        ("backlog", "backlog"),
    ],
)
def test_a_bad_setting_names_its_knob_and_says_what_is_accepted(text, knob):
    with pytest.raises(KnobError) as info:
        parse_settings([text])
    assert info.value.knob == knob and info.value.hint
    assert isinstance(info.value, InputError)  # bad input: exit code 2


def test_coupled_constraints_are_checked_and_the_last_value_wins():
    with pytest.raises(KnobError, match="somaxconn"):
        parse_settings(["backlog=4096", "net.core.somaxconn=128"])
    assert parse_settings(["backlog=8", "backlog=16"]) == {"backlog": 16}
    assert parse_setting(" TCP_NODELAY = 1") == ("TCP_NODELAY", True)
    assert parse_value(get_knob("net.ipv4.ip_local_port_range"), "1024 65000") == (1024, 65000)
