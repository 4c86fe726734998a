"""`tuner probe`: a measurement from the command line, and bad input without a traceback."""

from __future__ import annotations

import json

import pytest

from tuner.probe import Measurement


@pytest.mark.root
def test_probe_prints_a_measurement_as_json_that_loads_back(cli):
    r = cli(
        "probe",
        "rr",
        "--write-pattern",
        "split",
        "--set",
        "TCP_NODELAY=on",
        "--repeats",
        "2",
        "--duration",
        "0.2",
        "--json",
    )
    assert r.code == 0, r.err
    m = Measurement.from_dict(json.loads(r.out))
    assert m.repeats == 2 and m.assignment == {"TCP_NODELAY": True}
    assert m.workload.write_pattern.value == "split"
    assert m.value("latency_p50_ms") < 20 and set(m.counters) == {"client", "server"}


@pytest.mark.root
def test_probe_prints_metrics_counters_and_a_verdict_for_people(cli):
    r = cli(
        "probe",
        "burst",
        "--burst-connections",
        "64",
        "--burst-threads",
        "16",
        "--set",
        "backlog=4096",
        "--set",
        "net.core.somaxconn=4096",
        "--repeats",
        "1",
        "--duration",
        "0.2",
    )
    assert r.code == 0, r.err
    for text in (
        "workload  burst",
        "settings  backlog=4096, net.core.somaxconn=4096",
        "connect_p99_ms",
        "listen_overflows",
        "path health",
    ):
        assert text in r.out
    assert "valid" in r.out.splitlines()[-1].lower()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "NOPE=1"], "NOPE: is not a knob"),
        (["--set", "SO_RCVBUF=lots"], "SO_RCVBUF"),
        (["--set", "backlog=4096", "--set", "net.core.somaxconn=128"], "somaxconn"),
    ],
)
def test_bad_settings_exit_2_with_a_hint_and_no_traceback(cli, args, message):
    r = cli("probe", "rr", *args)
    assert r.code == 2
    assert message in r.err and "hint:" in r.err and "Traceback" not in r.err


def test_bad_shape_or_path_flags_exit_2(cli):
    for args in (
        ["--rtt", "5xs"],
        ["--connections", "0"],
        ["--write-pattern", "sideways"],
        ["--loss", "150%"],
    ):
        with pytest.raises(SystemExit) as info:
            cli("probe", "rr", *args)
        assert info.value.code == 2
