"""`tuner apply / verify / rollback / render` end to end. Writes happen only inside test namespaces."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tuner.knobs import CATALOGUE, SysctlTree, get_knob
from tuner.netns import run_in_netns
from tuner.profiles import Profile, load_profile, render_sysctl_d, save_profile

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tests" / "profiles" / "data" / "hand-written-example.toml"  # mechanics only: no evidence
BAD = REPO / "tests" / "profiles" / "bad"
MISSING_NS = f"tuner-{os.getpid()}-missing"


def live() -> dict[str, object]:
    tree = SysctlTree()
    return {n: tree.read(k) for n, k in CATALOGUE.items() if k.is_sysctl}


def set_somaxconn(value: int) -> None:
    SysctlTree().write(get_knob("net.core.somaxconn"), value)


def expectations(file: Path) -> tuple[str | None, int | None]:
    text = file.read_bytes().decode("utf-8", errors="replace")
    key = re.search(r"^# expect-key: (.*)$", text, re.M)
    line = next((n for n, raw in enumerate(text.splitlines(), start=1) if "# <-" in raw), None)
    return (key.group(1) if key else None), line


# --- the shipped example, through the real entry point -------------------------------------------


@pytest.mark.root
def test_the_shipped_example_applies_verifies_and_rolls_back_in_a_namespace(netns, tmp_path, tuner_process):
    state, conf = tmp_path / "state", tmp_path / "90-tuner.conf"
    host_before = live()
    before = run_in_netns(netns, live)
    profile = load_profile(EXAMPLE)

    r = tuner_process("apply", EXAMPLE, "--netns", netns, "--state-dir", state, "--persist", conf, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["changed"] is True
    assert {c["knob"] for c in data["applied"]} == {
        k for k in profile.sysctl if CATALOGUE[k].scope.value == "netns"
    }
    assert [n["knob"] for n in data["not_applicable"]] == ["net.core.netdev_max_backlog"]
    assert "host-wide" in data["not_applicable"][0]["reason"]
    assert data["socket"]["TCP_NODELAY"] is True and data["persisted"] is True
    assert conf.read_text() == render_sysctl_d(profile, netns=netns)
    assert "net.core.netdev_max_backlog" not in conf.read_text()  # never a host knob in a namespace's file
    assert run_in_netns(netns, live)["net.core.somaxconn"] == profile.sysctl["net.core.somaxconn"]

    r = tuner_process("apply", EXAMPLE, "--netns", netns, "--state-dir", state, "--persist", conf)
    assert r.code == 0, r.err
    assert "Nothing to change" in r.out and "already up to date" in r.out
    assert "sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)" in r.out  # for the application owner
    assert "tcp_nodelay on;" in r.out

    r = tuner_process("verify", EXAMPLE, "--netns", netns)
    assert r.code == 0 and r.out.startswith("OK") and "not applicable" in r.out

    run_in_netns(netns, set_somaxconn, 100)
    r = tuner_process("verify", EXAMPLE, "--netns", netns)
    assert r.code == 1 and r.out.startswith("DRIFT")
    assert re.search(r"net\.core\.somaxconn\s+8192\s+100", r.out)

    r = tuner_process("rollback", "--netns", netns, "--state-dir", state)
    assert r.code == 1 and "changed by someone else" in r.err  # the drifted somaxconn is not overwritten
    r = tuner_process("rollback", "--netns", netns, "--state-dir", state, "--force")
    assert r.code == 0, r.err
    assert "Rolled back" in r.out and str(conf) in r.out
    assert run_in_netns(netns, live) == before
    assert not conf.exists()
    assert live() == host_before


# --- bad profiles: exit 2, file/key/line named, nothing written ----------------------------------


@pytest.mark.root
def test_every_bad_profile_is_refused_by_apply_and_verify_with_nothing_written(netns, tmp_path, cli):
    state = tmp_path / "state"
    before = run_in_netns(netns, live)
    corpus = sorted(BAD.iterdir())
    problems = []
    for file in corpus:
        key, line = expectations(file)
        for args in (
            ("apply", file, "--netns", netns, "--state-dir", state),
            ("verify", file, "--netns", netns),
        ):
            r = cli(*args)
            wanted = {
                "exit code 2": r.code == 2,
                "the file": str(file) in r.err,
                "the key": not key or f"[{key}]" in r.err,
                "the line": not line or f"{file}:{line}:" in r.err,
                "a hint": "hint:" in r.err,
                "no traceback": "Traceback" not in r.err,
            }
            problems += [
                f"{file.name} ({args[0]}): no {what}; stderr: {r.err!r}"
                for what, ok in wanted.items()
                if not ok
            ]
    assert problems == []
    assert len(corpus) >= 25
    assert run_in_netns(netns, live) == before
    assert not state.exists()


@pytest.mark.root
def test_a_10_mb_profile_is_refused_with_nothing_written(netns, tmp_path, cli):
    big = tmp_path / "big.toml"
    big.write_bytes(b"version = 1\n" + b"#" * (10 * 1024 * 1024) + b"\n")
    before = run_in_netns(netns, live)
    for args in (
        ("apply", big, "--netns", netns, "--state-dir", tmp_path / "state"),
        ("verify", big, "--netns", netns),
    ):
        r = cli(*args)
        assert r.code == 2 and str(big) in r.err and "at most" in r.err
    assert run_in_netns(netns, live) == before
    assert not (tmp_path / "state").exists()


# --- the host: trust of the profile file ---------------------------------------------------------


def _socket_only(tmp_path: Path) -> Path:
    """A profile with no kernel settings: even a wrongly accepted host apply could not write anything."""
    file = tmp_path / "socket-only.toml"
    save_profile(Profile(name="socket-only", socket={"TCP_NODELAY": True}), file)
    return file


@pytest.mark.root
def test_a_host_apply_refuses_a_profile_others_can_write_or_not_owned_by_root(tmp_path, cli):
    file = _socket_only(tmp_path)
    file.chmod(0o666)
    r = cli("apply", file, "--state-dir", tmp_path / "state")
    assert r.code == 2 and "writable by group or others" in r.err and "chmod go-w" in r.err
    file.chmod(0o644)
    os.chown(file, 65534, 65534)
    r = cli("apply", file, "--state-dir", tmp_path / "state")
    assert r.code == 2 and "owned by uid 65534" in r.err and "chown root" in r.err
    assert not (tmp_path / "state").exists()


@pytest.mark.root
def test_a_dry_run_on_the_host_warns_about_an_untrusted_file_and_writes_nothing(tmp_path, cli):
    file = _socket_only(tmp_path)
    file.chmod(0o664)
    r = cli("apply", "--dry-run", file, "--state-dir", tmp_path / "state")
    assert r.code == 0 and "a real apply would refuse this file" in r.err
    assert "Dry run" in r.out and not (tmp_path / "state").exists()


@pytest.mark.root
def test_a_namespace_apply_does_not_need_a_root_owned_file(netns, tmp_path, cli):
    file = tmp_path / "p.toml"
    save_profile(Profile(name="p", sysctl={"net.core.somaxconn": 2222}), file)
    file.chmod(0o666)
    assert cli("apply", file, "--netns", netns, "--state-dir", tmp_path / "state").code == 0
    assert run_in_netns(netns, live)["net.core.somaxconn"] == 2222


# --- state dir, dry run, JSON, errors ------------------------------------------------------------


@pytest.mark.root
def test_the_state_dir_comes_from_tuner_state_dir_when_no_flag_is_given(netns, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("TUNER_STATE_DIR", str(tmp_path / "env-state"))
    file = tmp_path / "p.toml"
    save_profile(Profile(name="p", sysctl={"net.core.somaxconn": 3333}), file)
    before = run_in_netns(netns, live)
    assert cli("apply", file, "--netns", netns).code == 0
    assert (tmp_path / "env-state" / f"netns-{netns}.journal").stat().st_size > 0
    r = cli("rollback", "--netns", netns, "--json")
    assert r.code == 0 and json.loads(r.out)["restored"][0]["knob"] == "net.core.somaxconn"
    assert run_in_netns(netns, live) == before
    assert "Nothing to roll back" in cli("rollback", "--netns", netns).out


@pytest.mark.root
def test_a_dry_run_shows_the_plan_and_writes_nothing(netns, tmp_path, cli):
    before = run_in_netns(netns, live)
    r = cli(
        "apply",
        EXAMPLE,
        "--dry-run",
        "--netns",
        netns,
        "--state-dir",
        tmp_path / "state",
        "--persist",
        tmp_path / "90.conf",
    )
    assert r.code == 0
    assert re.search(r"net\.core\.somaxconn\s+\d+\s+8192\s+would change", r.out)
    assert "Would write" in r.out
    assert run_in_netns(netns, live) == before
    assert not (tmp_path / "state").exists() and not (tmp_path / "90.conf").exists()


@pytest.mark.root
def test_verify_json_lists_drift_per_key(netns, cli):
    r = cli("verify", EXAMPLE, "--netns", netns, "--json")
    data = json.loads(r.out)
    assert r.code == 1 and data["ok"] is False
    drift = {d["knob"]: d for d in data["drift"]}
    assert drift["net.core.somaxconn"]["expected"] == 8192
    assert drift["net.ipv4.ip_local_port_range"]["expected"] == [10240, 65000]
    assert [n["knob"] for n in data["not_applicable"]] == ["net.core.netdev_max_backlog"]


@pytest.mark.root
def test_persist_into_a_missing_directory_is_bad_input_and_writes_nothing(netns, tmp_path, cli):
    before = run_in_netns(netns, live)
    r = cli(
        "apply",
        EXAMPLE,
        "--netns",
        netns,
        "--state-dir",
        tmp_path / "state",
        "--persist",
        tmp_path / "nope" / "90.conf",
    )
    assert r.code == 2 and "does not exist" in r.err
    assert run_in_netns(netns, live) == before and not (tmp_path / "state").exists()


@pytest.mark.root
@pytest.mark.parametrize("verb", [["apply", str(EXAMPLE)], ["verify", str(EXAMPLE)], ["rollback"]])
def test_an_unknown_namespace_is_an_environment_problem(verb, cli, tmp_path):
    r = cli(*verb, "--netns", MISSING_NS, *(["--state-dir", tmp_path] if verb[0] != "verify" else []))
    assert r.code == 3 and "does not exist" in r.err


# --- render --------------------------------------------------------------------------------------


def test_render_prints_a_sysctl_d_file_or_the_socket_settings(cli):
    r = cli("render", EXAMPLE)
    assert r.code == 0
    assert "net.ipv4.ip_local_port_range = 10240 65000" in r.out.splitlines()
    r = cli("render", EXAMPLE, "--format", "socket")
    assert r.code == 0
    assert "listener.listen(8192)" in r.out and "listen 80 backlog=8192 so_keepalive=120:10:6;" in r.out


def test_render_refuses_a_bad_profile(cli):
    r = cli("render", BAD / "core-pattern.toml")
    assert r.code == 2 and "kernel.core_pattern" in r.err
