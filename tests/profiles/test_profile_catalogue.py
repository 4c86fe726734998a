"""The profile catalogue: names resolved in /etc/tuner/profiles ($TUNER_PROFILES_DIR) then the shipped
profiles; `include` with cycles and depth refused; hand-written profiles with only their settings; the
wheel carrying the shipped profiles and the systemd units."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.errors import ProfileError
from tuner.profiles import entries, load_profile, render_sysctl_d, resolve_profile

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in (REPO / "profiles").glob("*.toml"))


@pytest.fixture
def system_dir(tmp_path, monkeypatch):
    d = tmp_path / "etc-profiles"
    d.mkdir()
    monkeypatch.setenv("TUNER_PROFILES_DIR", str(d))
    return d


def test_every_shipped_profile_is_found_by_name_and_listed(system_dir, capsys):
    assert SHIPPED
    for name in SHIPPED:
        assert resolve_profile(name).read_bytes() == (REPO / "profiles" / f"{name}.toml").read_bytes()
    assert main(["profiles", "list", "--json"]) == 0
    listed = {e["name"]: e["source"] for e in json.loads(capsys.readouterr().out)}
    assert {n: "shipped" for n in SHIPPED}.items() <= listed.items()


def test_a_system_profile_hides_a_shipped_one_of_the_same_name(system_dir):
    name = SHIPPED[0]
    (system_dir / f"{name}.toml").write_text('version = 1\n[sysctl]\n"net.core.somaxconn" = 1234\n')
    assert resolve_profile(name) == system_dir / f"{name}.toml"
    hidden = [e for e in entries() if e.name == name]
    assert [(e.source, e.shadowed) for e in hidden] == [("system", False), ("shipped", True)]


def test_an_unknown_name_is_an_error_that_lists_the_known_ones(system_dir, capsys):
    with pytest.raises(ProfileError, match="no profile of that name") as info:
        resolve_profile("no-such-profile")
    assert SHIPPED[0] in info.value.hint
    assert main(["render", "no-such-profile"]) == 2


def test_a_hand_written_profile_needs_only_version_and_settings(tmp_path):
    f = tmp_path / "web-edge.toml"
    f.write_text('version = 1\n[sysctl]\n"net.core.somaxconn" = 8192\n[socket]\nTCP_NODELAY = true\n')
    p = load_profile(f)
    assert (
        p.name == "web-edge"
        and p.sysctl == {"net.core.somaxconn": 8192}
        and p.socket == {"TCP_NODELAY": True}
    )
    assert p.tuner_version == "" and p.evidence == {}
    assert "hand-written" in render_sysctl_d(p)


def test_show_says_evidence_none_for_a_hand_written_profile(tmp_path, capsys):
    f = tmp_path / "mine.toml"
    f.write_text('version = 1\n[sysctl]\n"net.core.somaxconn" = 8192\n')
    assert main(["profiles", "show", str(f)]) == 0
    assert "evidence  none" in capsys.readouterr().out


def test_include_merges_a_parent_and_this_file_wins(system_dir, tmp_path):
    (system_dir / "base.toml").write_text(
        'version = 1\n[sysctl]\n"net.core.somaxconn" = 4096\n"net.ipv4.tcp_fin_timeout" = 30\n'
        "[socket]\nTCP_NODELAY = true\n"
    )
    child = tmp_path / "child.toml"
    child.write_text('version = 1\ninclude = "base"\n[sysctl]\n"net.core.somaxconn" = 8192\n')
    p = load_profile(child)
    assert p.name == "child"
    assert p.sysctl == {"net.core.somaxconn": 8192, "net.ipv4.tcp_fin_timeout": 30}
    assert p.socket == {"TCP_NODELAY": True}


def test_include_by_relative_path_and_the_merged_constraints_are_checked(tmp_path):
    (tmp_path / "parent.toml").write_text("version = 1\n[socket]\nbacklog = 8192\n")
    child = tmp_path / "child.toml"
    child.write_text('version = 1\ninclude = "./parent.toml"\n[sysctl]\n"net.core.somaxconn" = 8192\n')
    assert load_profile(child).socket == {"backlog": 8192}
    child.write_text('version = 1\ninclude = "./parent.toml"\n[sysctl]\n"net.core.somaxconn" = 128\n')
    with pytest.raises(ProfileError, match="somaxconn"):
        load_profile(child)


def test_an_include_cycle_is_refused_with_exit_2(tmp_path, capsys):
    (tmp_path / "a.toml").write_text('version = 1\ninclude = "./b.toml"\n')
    (tmp_path / "b.toml").write_text('version = 1\ninclude = "./a.toml"\n')
    with pytest.raises(ProfileError, match=r"include cycle: a.toml -> b.toml -> a.toml") as info:
        load_profile(tmp_path / "a.toml")
    assert info.value.key == "include"
    assert main(["render", str(tmp_path / "a.toml")]) == 2
    assert "include cycle" in capsys.readouterr().err


def test_includes_nested_too_deep_are_refused(tmp_path):
    for i in range(12):
        (tmp_path / f"p{i}.toml").write_text(f'version = 1\ninclude = "./p{i + 1}.toml"\n')
    (tmp_path / "p12.toml").write_text("version = 1\n")
    with pytest.raises(ProfileError, match="nest more than 8 deep"):
        load_profile(tmp_path / "p0.toml")
    load_profile(tmp_path / "p6.toml")  # 6 levels are fine


def test_diff_exits_1_when_two_profiles_differ(tmp_path, capsys):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('version = 1\n[sysctl]\n"net.core.somaxconn" = 8192\n')
    b.write_text('version = 1\n[sysctl]\n"net.core.somaxconn" = 4096\n')
    assert main(["profiles", "diff", str(a), str(b), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["differ"] == [
        {"knob": "net.core.somaxconn", "a": 8192, "b": 4096}
    ]
    assert main(["profiles", "diff", str(a), str(a)]) == 0


@pytest.mark.slow
def test_the_wheel_carries_the_shipped_profiles_the_units_the_manual_and_the_license(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("tuner-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SHIPPED:
        assert f"tuner/data/profiles/{name}.toml" in names
    assert {"tuner/data/systemd/tuner.service", "tuner/data/systemd/tuner-apply@.service"} <= names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert any(n.endswith("data/share/man/man1/tuner.1") for n in names)
    assert any(n.endswith("data/share/bash-completion/completions/tuner.bash") for n in names)
    assert "deprecat" not in done.stderr.lower(), done.stderr
