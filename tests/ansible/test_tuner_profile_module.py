"""The Ansible module tuner.net.tuner_profile, run by ansible-core (ad hoc) against localhost inside a
scratch namespace: apply twice (the second run changes nothing), check mode writes nothing, absent rolls back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "ansible" / "collections"


def ns_value(netns: str, name: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-n", name], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def play(tmp_path, netns):
    ansible_bin = Path(sys.executable).parent / "ansible"
    if not ansible_bin.exists():
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    tuner = tmp_path / "tuner"
    tuner.write_text(f'#!/bin/sh\nexec {sys.executable} -m tuner "$@"\n')
    tuner.chmod(0o755)
    profile = tmp_path / "web.toml"
    profile.write_text(
        'version = 1\n[sysctl]\n"net.core.somaxconn" = 3333\n"net.ipv4.tcp_fin_timeout" = 17\n'
    )

    def run(*flags: str, state: str = "present") -> tuple[dict, str]:
        """The module's result (and what Ansible printed, e.g. the diff) of one ad-hoc run."""
        module_args = (
            f"name={profile} state={state} netns={netns} state_dir={tmp_path / 'state'} tuner={tuner}"
        )
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "PYTHONPATH": str(REPO),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
            "ANSIBLE_NOCOLOR": "1",
        }
        done = subprocess.run(
            [
                str(ansible_bin),
                "localhost",
                "-i",
                "localhost,",
                "-c",
                "local",
                "-m",
                "tuner.net.tuner_profile",
                "-a",
                module_args,
                *flags,
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        head, _, body = done.stdout.partition("localhost | ")
        status, _, result = body.partition(" => ")
        assert status in ("CHANGED", "SUCCESS"), done.stdout
        return json.loads(result), head

    return run


def test_apply_is_idempotent_check_mode_writes_nothing_and_absent_rolls_back(play, netns):
    before = ns_value(netns, "net.core.somaxconn")
    assert before != "3333"

    checked, printed = play("--check", "--diff")
    assert checked["changed"] is True
    assert "+net.core.somaxconn = 3333" in printed
    assert ns_value(netns, "net.core.somaxconn") == before  # check mode wrote nothing

    first, _ = play()
    assert first["changed"] is True
    assert {c["knob"] for c in first["changes"]} == {"net.core.somaxconn", "net.ipv4.tcp_fin_timeout"}
    assert ns_value(netns, "net.core.somaxconn") == "3333"

    second, _ = play()
    assert second["changed"] is False and second["changes"] == []

    assert play("--check", state="absent")[0]["changed"] is True
    assert ns_value(netns, "net.core.somaxconn") == "3333"
    gone, _ = play(state="absent")
    assert gone["changed"] is True
    assert ns_value(netns, "net.core.somaxconn") == before
    assert play(state="absent")[0]["changed"] is False


def test_the_example_playbook_passes_ansibles_syntax_check(tmp_path):
    book = REPO / "ansible" / "playbooks" / "rollout.yml"
    text = book.read_text()
    assert "tuner.net.tuner_profile" in text and "serial:" in text and "verify" in text
    bin_ = Path(sys.executable).parent / "ansible-playbook"
    if not bin_.exists():
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_HOME": str(tmp_path),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    done = subprocess.run(
        [str(bin_), "--syntax-check", "-i", "localhost,", str(book), "-e", "profile=x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
