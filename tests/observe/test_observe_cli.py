"""`tuner observe` end to end on a namespace the test creates."""

from __future__ import annotations

import json

import observe_scenarios as sc
import pytest

from tuner.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, main

pytestmark = pytest.mark.root


def test_observe_prints_json_for_scripts(netns, capsys):
    with sc.idle_connections(netns, count=12):
        code = main(["observe", "--netns", netns, "--duration", "500ms", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)
    assert doc["netns"] == netns and doc["sockets"]["tcp.ESTABLISHED"] == 24
    by_key = {s["key"]: s for s in doc["services"]}
    server = by_key["tcp server :5000"]
    assert server["class"] == "long-lived idle"
    assert [s["name"] for s in server["symptoms"]] == ["idle-without-keepalive"]
    assert "SO_KEEPALIVE" in server["symptoms"][0]["knobs"]
    assert server["workload"]["kind"] == "keepalive" and "rtt" in server["path"]


def test_observe_prints_a_table_and_the_evidence(netns, capsys):
    with sc.idle_connections(netns, count=12):
        code = main(["observe", "--netns", netns, "--duration", "300ms"])
    out = capsys.readouterr().out
    assert code == 0
    assert "tcp server :5000" in out and "long-lived idle" in out
    assert "idle-without-keepalive: 12 of 12 connection(s) idle" in out
    assert "knobs: SO_KEEPALIVE" in out


def test_an_empty_namespace_needs_no_tuning(netns, capsys):
    assert main(["observe", "--netns", netns, "--duration", "200ms"]) == 0
    assert "nothing here needs tuning" in capsys.readouterr().out


def test_bad_input_and_a_missing_namespace_get_their_exit_codes(capsys):
    assert main(["observe", "--duration", "soon"]) == EXIT_BAD_INPUT
    assert main(["observe", "--duration", "0s", "--netns", "tuner-missing"]) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err
    assert "cannot read duration 'soon'" in err and "tuner-missing" in err and "hint:" in err
