"""The scripting contract: `changed` in every apply/verify/rollback JSON, a JSON error object on failure,
`apply --check` exit codes, `rollback` refusing knobs someone else changed (unless --force), and
`--persist` with `--netns` writing only the namespace's knobs."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.root


def ns_get(netns: str, name: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-n", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def ns_set(netns: str, name: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{name}={value}"], check=True)


@pytest.fixture
def profile(tmp_path):
    f = tmp_path / "web.toml"
    f.write_text('version = 1\n[sysctl]\n"net.core.somaxconn" = 3333\n"net.core.netdev_max_backlog" = 5000\n')
    return f


def test_check_exits_1_when_something_would_change_and_0_when_nothing_would(
    netns, profile, tmp_path, tuner_process
):
    r = tuner_process("apply", profile, "--netns", netns, "--check", "--json")
    assert r.code == 1, r.err
    data = json.loads(r.out)
    assert data["changed"] is False and data["would_change"] is True and data["applied"] == []
    assert tuner_process("apply", profile, "--netns", netns, "--state-dir", tmp_path / "s").code == 0
    again = tuner_process("apply", profile, "--netns", netns, "--state-dir", tmp_path / "s", "--json")
    assert json.loads(again.out)["changed"] is False
    assert tuner_process("apply", profile, "--netns", netns, "--check").code == 0
    assert json.loads(tuner_process("verify", profile, "--netns", netns, "--json").out)["changed"] is False


def test_a_failure_with_json_prints_a_json_error_object(tmp_path, tuner_process):
    r = tuner_process("apply", tmp_path / "missing.toml", "--dry-run", "--json")
    assert r.code == 2
    err = json.loads(r.out)
    assert err["exit_code"] == 2 and err["changed"] is False and "cannot open" in err["error"]
    assert err["file"].endswith("missing.toml")


def test_rollback_refuses_a_knob_someone_else_changed_unless_forced(netns, profile, tmp_path, tuner_process):
    before = ns_get(netns, "net.core.somaxconn")
    state = tmp_path / "state"
    assert tuner_process("apply", profile, "--netns", netns, "--state-dir", state).code == 0
    ns_set(netns, "net.core.somaxconn", "2222")  # the administrator changed it afterwards
    r = tuner_process("rollback", "--netns", netns, "--state-dir", state, "--json")
    assert r.code == 1 and "changed by someone else" in r.err and "--force" in r.err
    assert ns_get(netns, "net.core.somaxconn") == "2222"  # nothing was rolled back
    r = tuner_process("rollback", "--netns", netns, "--state-dir", state, "--force", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["changed"] is True
    assert ns_get(netns, "net.core.somaxconn") == before


def test_persist_for_a_namespace_writes_only_its_own_knobs(netns, profile, tmp_path, tuner_process):
    conf = tmp_path / "ns.conf"
    r = tuner_process("apply", profile, "--netns", netns, "--state-dir", tmp_path / "s", "--persist", conf)
    assert r.code == 0, r.err
    text = conf.read_text()
    assert "net.core.somaxconn = 3333" in text and "netdev_max_backlog" not in text
    assert f"ip netns exec {netns} sysctl -p" in text
