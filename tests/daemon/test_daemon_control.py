"""The request protocol between `tuner daemon --release/--stage` and the running daemon: both ends."""

from __future__ import annotations

import json
import os

import pytest

from tuner.daemon.control import CONTROL_DIR, INBOX_DIR, ControlDir, ReleaseRequest, daemon_running
from tuner.profiles import Profile, load_profile


def test_a_release_request_round_trips_through_the_control_directory(tmp_path):
    control = ControlDir(tmp_path / "state")
    path = control.request_release("net.core.somaxconn")
    assert path.parent == tmp_path / "state" / CONTROL_DIR
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["knob"] == "net.core.somaxconn"
    [request] = control.take_releases()
    assert request.knob == "net.core.somaxconn" and request.at > 0
    assert control.take_releases() == []  # taken once
    assert list(path.parent.iterdir()) == []


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1]", b"{}", b'{"knob": ""}', b'{"knob": 5}', b'{"knob": "x", "at": "now"}', b"\xff"],
)
def test_a_malformed_release_request_is_refused(raw):
    with pytest.raises(ValueError):
        ReleaseRequest.from_json(raw)


def test_unreadable_requests_are_dropped_and_other_files_left_alone(tmp_path):
    control = ControlDir(tmp_path)
    (tmp_path / CONTROL_DIR).mkdir()
    (tmp_path / CONTROL_DIR / "release-bad.json").write_bytes(b'{"knob": 1}')
    (tmp_path / CONTROL_DIR / "release-big.json").write_bytes(b" " * 5000)
    (tmp_path / CONTROL_DIR / "notes.txt").write_text("keep")
    (tmp_path / CONTROL_DIR / "release-ok.json").write_bytes(
        ReleaseRequest("net.core.somaxconn", 1.0).to_json()
    )
    assert control.take_releases() == [ReleaseRequest("net.core.somaxconn", 1.0)]
    assert [p.name for p in (tmp_path / CONTROL_DIR).iterdir()] == ["notes.txt"]


def test_a_staged_profile_waits_in_the_inbox_until_accepted(tmp_path):
    control = ControlDir(tmp_path)
    assert control.staged() == []
    dest = control.stage(Profile(name="k", description="", sysctl={"net.core.somaxconn": 4096}))
    assert dest == tmp_path / INBOX_DIR / "staged-k.toml"
    assert control.staged() == ["staged-k.toml"]
    (tmp_path / "profiles").mkdir()
    moved = control.accept("staged-k.toml", tmp_path / "profiles")
    assert moved == tmp_path / "profiles" / "staged-k.toml" and control.staged() == []
    assert load_profile(moved).sysctl == {"net.core.somaxconn": 4096}


def test_no_daemon_runs_without_a_held_lock_and_none_is_woken(tmp_path):
    assert not daemon_running(tmp_path)
    assert not ControlDir(tmp_path).wake()
