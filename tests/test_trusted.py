"""Files an unprivileged user planted are refused: symlinks, directories and files of another owner, and
files others can write — for the state directory, the daemon's lock, a search journal, `--stage` and
`--config`. Nothing outside is created or written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.errors import UnsafeFileError
from tuner.trusted import atomic_write, ensure_dir, open_append, read_trusted

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
PROFILE = REPO / "profiles" / "connection-burst.toml"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


@pytest.fixture
def attacker_dir(tmp_path):
    """A directory owned by another user (uid 65534), as a world-writable /tmp subdirectory would be."""
    d = tmp_path / "users"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    return d


@pytest.fixture
def sticky(tmp_path):
    """A world-writable sticky directory, like /tmp."""
    d = tmp_path / "tmp"
    d.mkdir()
    d.chmod(0o1777)
    return d


def test_a_new_state_directory_is_created_private(tmp_path):
    d = ensure_dir(tmp_path / "a" / "state")
    assert (d.stat().st_mode & 0o777) == 0o700


def test_a_state_directory_of_another_user_is_refused(attacker_dir):
    with pytest.raises(UnsafeFileError, match="owned by uid 65534"):
        ensure_dir(attacker_dir)
    with pytest.raises(UnsafeFileError, match="directory .* is owned by uid 65534"):
        ensure_dir(attacker_dir / "state")
    assert not (attacker_dir / "state").exists()


def test_a_symlinked_or_world_writable_state_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        ensure_dir(tmp_path / "link")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(UnsafeFileError, match="writable by group or others"):
        ensure_dir(open_dir)
    with pytest.raises(UnsafeFileError, match="not sticky"):
        ensure_dir(open_dir / "state")


def test_a_sticky_world_writable_parent_is_fine_but_a_planted_file_is_not(sticky, tmp_path):
    fd = open_append(sticky / "mine.jsonl")
    os.close(fd)
    planted = sticky / "planted.jsonl"
    planted.write_text("")
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(UnsafeFileError, match="owned by uid 65534"):
        open_append(planted)
    target = tmp_path / "target"
    (sticky / "link.jsonl").symlink_to(target)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        open_append(sticky / "link.jsonl")
    assert not target.exists()


def test_read_trusted_refuses_what_others_can_change(tmp_path):
    f = tmp_path / "cfg.toml"
    f.write_text("x = 1\n")
    f.chmod(0o646)
    with pytest.raises(UnsafeFileError, match="writable by group or others"):
        read_trusted(f, 100)
    f.chmod(0o644)
    assert read_trusted(f, 100) == b"x = 1\n"


def test_atomic_write_replaces_a_planted_symlink_instead_of_following_it(tmp_path):
    target = tmp_path / "secret"
    target.write_text("keep")
    (tmp_path / "out.toml").symlink_to(target)
    atomic_write(tmp_path / "out.toml", b"new")
    assert target.read_text() == "keep"
    assert not (tmp_path / "out.toml").is_symlink() and (tmp_path / "out.toml").read_bytes() == b"new"


def test_the_daemon_refuses_a_planted_state_directory_and_lock(attacker_dir, tmp_path):
    victim = tmp_path / "victim"
    (attacker_dir / "daemon.lock").symlink_to(victim)
    done = subprocess.run(
        [sys.executable, "-m", "tuner", "daemon", "--state-dir", str(attacker_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "owned by uid 65534" in done.stderr
    assert not victim.exists()


def test_release_and_stage_refuse_a_planted_state_directory(attacker_dir, capsys):
    assert main(["daemon", "--state-dir", str(attacker_dir), "--release", "net.core.somaxconn"]) == 2
    assert main(["daemon", "--state-dir", str(attacker_dir), "--stage", str(PROFILE)]) == 2
    assert "owned by uid 65534" in capsys.readouterr().err
    assert list(attacker_dir.iterdir()) == []


def test_stage_refuses_a_profile_others_can_write(tmp_path, capsys):
    profile = tmp_path / "p.toml"
    profile.write_bytes(PROFILE.read_bytes())
    profile.chmod(0o646)
    state = tmp_path / "state"
    assert main(["daemon", "--state-dir", str(state), "--stage", str(profile)]) == 2
    assert "writable by group or others" in capsys.readouterr().err
    assert not (state / "inbox").exists()


def test_a_config_others_can_write_fails_check_config(tmp_path, capsys):
    cfg = tmp_path / "tuner.toml"
    cfg.write_text('mode = "apply"\n')
    cfg.chmod(0o666)
    assert main(["daemon", "--config", str(cfg), "--check-config"]) == 2
    assert "writable by group or others" in capsys.readouterr().err
    cfg.chmod(0o644)
    assert main(["daemon", "--config", str(cfg), "--check-config"]) == 0


def test_recommend_refuses_a_journal_symlink_in_tmp(sticky, tmp_path):
    victim = tmp_path / "victim"
    (sticky / "search.jsonl").symlink_to(victim)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuner",
            "recommend",
            "rr",
            "--budget",
            "1",
            "--journal",
            str(sticky / "search.jsonl"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "symbolic link" in done.stderr
    assert not victim.exists()
