from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tuner.errors import InputError, KnobError, ProfileError, UnsafeFileError
from tuner.knobs import KernelFacts
from tuner.profiles import Profile, dump_profile, load_profile, parse_profile, save_profile
from tuner.workload import NetworkPath as NetPath
from tuner.workload import Workload, WorkloadKind, WritePattern

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tests" / "profiles" / "data" / "hand-written-example.toml"  # mechanics only: no evidence
IS_ROOT = os.geteuid() == 0

HEAD = """version = 1

[profile]
name = "t"
created = 2025-01-01T00:00:00Z
tuner_version = "0.1.0"
kernel = "6.1"
"""


def _profile_with_everything() -> Profile:
    return Profile(
        name="everything",
        description='line one\nline two, with "quotes" and unicode: µs',
        created=datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC),
        tuner_version="0.1.0",
        kernel="6.1.0-18-amd64",
        workload=Workload(WorkloadKind.RR, write_pattern=WritePattern.SPLIT, connections=4, think_time=0.25),
        path=NetPath(rtt=0.05, rate_bps=1e8, loss=0.01, queue_packets=300),
        sysctl={
            "net.ipv4.tcp_rmem": [4096, 131072, 33554432],
            "net.core.somaxconn": 4096,
            "net.ipv4.tcp_congestion_control": "reno",
            "net.ipv4.tcp_slow_start_after_idle": 0,
            "net.core.rmem_max": 67108864,
        },
        socket={"TCP_NODELAY": True, "backlog": 1024, "TCP_CONGESTION": "cubic"},
        evidence={
            "baseline": {"latency_p50_ms": 44.1, "tps": 22.0},
            "recommended": {"latency_p50_ms": 0.05, "tps": 19000.5},
            "trials": [
                {"n": 1, "score": 44.1, "assignment": {"TCP_NODELAY": False}},
                {"n": 2, "score": 0.05, "assignment": {"TCP_NODELAY": True}},
            ],
            "confidence": 0.99,
            "measured": datetime(2025, 3, 4, tzinfo=UTC),
            "notes": ["median of 3 repeats", "spread < 5%"],
        },
    )


def test_load_of_save_gives_back_the_same_profile(tmp_path):
    profile = _profile_with_everything()
    save_profile(profile, tmp_path / "p.toml")
    assert load_profile(tmp_path / "p.toml") == profile


def test_saving_a_loaded_canonical_file_reproduces_its_bytes(tmp_path):
    save_profile(_profile_with_everything(), tmp_path / "p.toml")
    for file in (tmp_path / "p.toml", EXAMPLE):
        original = file.read_bytes()
        save_profile(load_profile(file), tmp_path / "again.toml")
        assert (tmp_path / "again.toml").read_bytes() == original, file


def test_canonical_text_starts_with_the_schema_version_and_quotes_knob_names():
    text = dump_profile(_profile_with_everything())
    first_setting = next(line for line in text.splitlines() if line and not line.startswith("#"))
    assert first_setting == "version = 1"
    assert '"net.ipv4.tcp_rmem" = [4096, 131072, 33554432]' in text
    assert '"net.ipv4.tcp_slow_start_after_idle" = false' in text


def test_values_are_canonical_in_memory():
    profile = _profile_with_everything()
    assert profile.sysctl["net.ipv4.tcp_rmem"] == (4096, 131072, 33554432)
    assert profile.sysctl["net.ipv4.tcp_slow_start_after_idle"] is False


def test_evidence_passes_through_untouched(tmp_path):
    profile = _profile_with_everything()
    save_profile(profile, tmp_path / "p.toml")
    loaded = load_profile(tmp_path / "p.toml")
    assert loaded.evidence == profile.evidence
    assert loaded.evidence["trials"][1]["assignment"] == {"TCP_NODELAY": True}


def test_evidence_that_toml_cannot_hold_is_refused_when_the_profile_is_made():
    with pytest.raises(InputError, match="evidence.baseline.p99: NoneType"):
        Profile(name="x", evidence={"baseline": {"p99": None}})


def test_a_profile_refuses_knobs_in_the_wrong_section_and_bad_values():
    with pytest.raises(KnobError, match="is a socket setting, not a sysctl"):
        Profile(name="x", sysctl={"TCP_NODELAY": True})
    with pytest.raises(KnobError, match="is a sysctl, not a socket setting"):
        Profile(name="x", socket={"net.core.rmem_max": 1 << 20})
    with pytest.raises(KnobError, match="out of range"):
        Profile(name="x", sysctl={"net.core.somaxconn": 0})
    with pytest.raises(InputError, match="name"):
        Profile(name="../etc")


def test_from_assignment_splits_kernel_and_socket_settings():
    p = Profile.from_assignment("x", {"net.core.somaxconn": 4096, "TCP_NODELAY": True, "backlog": 4096})
    assert p.sysctl == {"net.core.somaxconn": 4096}
    assert p.socket == {"TCP_NODELAY": True, "backlog": 4096}
    assert p.assignment == {"net.core.somaxconn": 4096, "TCP_NODELAY": True, "backlog": 4096}


def test_unquoted_dotted_names_are_flattened_to_exact_catalogue_names():
    text = (
        HEAD
        + """
[sysctl]
net . core . somaxconn = 4096
"net.ipv4.tcp_fin_timeout" = 15

[sysctl.net.ipv4]
tcp_tw_reuse = 1
"""
    )
    profile = parse_profile(text.encode(), "nested.toml")
    assert profile.sysctl == {
        "net.core.somaxconn": 4096,
        "net.ipv4.tcp_fin_timeout": 15,
        "net.ipv4.tcp_tw_reuse": 1,
    }
    assert '"net.core.somaxconn" = 4096' in dump_profile(profile)


def test_unquoted_names_that_do_not_flatten_to_a_knob_are_refused_with_their_line():
    text = HEAD + '\n[sysctl.kernel]\ncore_pattern = "|/bin/sh"\n'
    with pytest.raises(ProfileError) as info:
        parse_profile(text.encode(), "nested.toml")
    assert info.value.key == "sysctl.kernel.core_pattern" and info.value.line == 10


def test_flags_written_as_0_or_1_load_as_booleans():
    profile = parse_profile((HEAD + '\n[sysctl]\n"net.ipv4.tcp_no_metrics_save" = 1\n').encode())
    assert profile.sysctl == {"net.ipv4.tcp_no_metrics_save": True}


def test_the_kernel_must_offer_the_congestion_control():
    facts = KernelFacts(frozenset({"reno", "cubic", "bbr"}), frozenset({"reno", "cubic"}))
    data = (HEAD + '\n[sysctl]\n"net.ipv4.tcp_congestion_control" = "bbr"\n').encode()
    assert parse_profile(data, facts=facts).sysctl["net.ipv4.tcp_congestion_control"] == "bbr"
    with pytest.raises(ProfileError, match="not allowed inside a network namespace") as info:
        parse_profile(data, "p.toml", facts=facts, in_netns=True)
    assert info.value.line == 10 and "tcp_allowed_congestion_control" in info.value.hint
    with pytest.raises(ProfileError, match="not available on this kernel"):
        parse_profile(data, facts=KernelFacts(frozenset({"reno"}), frozenset({"reno"})))


def test_save_replaces_the_file_atomically_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "p.toml"
    target.write_text("old")
    save_profile(_profile_with_everything(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["p.toml"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert load_profile(target).name == "everything"


@pytest.mark.parametrize(
    "make",
    [
        lambda p: os.mkfifo(p),
        lambda p: p.mkdir(),
    ],
)
def test_only_regular_files_are_read_and_a_fifo_does_not_block(tmp_path, make):
    make(tmp_path / "p.toml")
    with pytest.raises(ProfileError, match="not a regular file"):
        load_profile(tmp_path / "p.toml")


def test_a_missing_file_is_bad_input(tmp_path):
    with pytest.raises(ProfileError, match="cannot open"):
        load_profile(tmp_path / "nope.toml")


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give the file to another owner")
def test_a_host_apply_only_trusts_files_owned_by_root_and_not_writable_by_others(tmp_path):
    file = tmp_path / "p.toml"
    save_profile(_profile_with_everything(), file)
    assert load_profile(file, trusted_only=True).name == "everything"
    file.chmod(0o664)
    with pytest.raises(UnsafeFileError, match="writable by group or others") as info:
        load_profile(file, trusted_only=True)
    assert "chmod go-w" in info.value.hint
    file.chmod(0o644)
    os.chown(file, 65534, 65534)
    with pytest.raises(UnsafeFileError, match="owned by uid 65534") as info:
        load_profile(file, trusted_only=True)
    assert "chown root" in info.value.hint
    assert load_profile(file).name == "everything"  # reading it (verify, render) is fine
