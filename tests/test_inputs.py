"""Hostile and absurd input gets exit 2 and a message that names the bound, never a traceback or a write.

The regression inputs of the fault/hostile-input review: deep nesting, numbers too large or infinite,
values the kernel would refuse only at write time, and command-line values far out of range.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.daemon.state import load_state
from tuner.errors import InputError, KnobError
from tuner.inputs import MAX_NESTING, TooDeep, bounded, bounded_int, check_nesting, parse_json, parse_toml
from tuner.knobs import KernelFacts, check_assignment
from tuner.workload import NetworkPath as NetPath
from tuner.workload import Workload, WorkloadKind

REPO = Path(__file__).resolve().parents[1]
HEAD = (
    'version = 1\n[profile]\nname = "x"\ncreated = 2026-01-01T00:00:00Z\ntuner_version = "0.1"\n'
    'kernel = "6.1"\n'
)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def refused(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


PROFILES = {
    "deep-table": (HEAD + "[sysctl." + ".".join(["a"] * 3000) + "]\nb = 1\n", "nested more than"),
    "deep-array": (
        HEAD + '[sysctl]\n"net.core.somaxconn" = ' + "[" * 50_000 + "]" * 50_000 + "\n",
        "nested more than",
    ),
    "rtt-400-digits": (HEAD + "[path]\nrtt = " + "9" * 400 + "\n", "far too large"),
    "rtt-inf": (HEAD + "[path]\nrtt = inf\n", "out of range [0, 10] s"),
    "rtt-nan": (HEAD + "[path]\nrtt = nan\n", "out of range"),
    "connections-10e400": (
        HEAD + '[workload]\nkind = "rr"\nconnections = 1' + "0" * 400 + "\n",
        "out of range",
    ),
    "think-time-inf": (HEAD + '[workload]\nkind = "rr"\nthink_time = inf\n', "out of range [0, 3600]"),
    "port-range-from-1": (
        HEAD + '[sysctl]\n"net.ipv4.ip_local_port_range" = [1, 65535]\n',
        "low 1 is out of range",
    ),
}


@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("verb", ["render", "verify", "apply --dry-run"])
def test_a_hostile_profile_is_refused_with_exit_2_by_every_verb(tmp_path, name, verb):
    text, words = PROFILES[name]
    file = tmp_path / f"{name}.toml"
    file.write_text(text)
    refused(run(*verb.split(), str(file)), str(file), words)


def test_host_tcp_mem_below_the_memory_floor_is_refused_where_the_machine_is_known():
    facts = KernelFacts(frozenset({"cubic"}), frozenset({"cubic"}), memory_pages=6_000_000)
    with pytest.raises(KnobError, match="below the floor of 5859 pages"):
        check_assignment({"net.ipv4.tcp_mem": [1, 1, 1]}, facts)
    check_assignment({"net.ipv4.tcp_mem": [200_000, 300_000, 400_000]}, facts)
    assert KernelFacts.read().memory_pages > 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["probe", "rr", "--rtt", "99999h"], ["path rtt", "out of range [0, 10] s"]),
        (["probe", "rr", "--request-size", "0"], ["request_size", "[1, 67108864]"]),
        (["probe", "rr", "--connections", "1" + "0" * 400], ["connections"]),
        (["probe", "rr", "--rate", "9" * 400 + "mbit"], ["path rate", "out of range"]),
        (["recommend", "rr", "--budget", "100000"], ["--budget 100000: at most 1000"]),
        (["recommend", "rr", "--time", "99999h"], ["--time", "at most 604800 s"]),
    ],
)
def test_command_line_values_far_out_of_range_are_refused_with_the_bound(args, words):
    refused(run(*args), *words)


def test_a_deeply_nested_config_is_refused_by_check_config(tmp_path, capsys):
    cfg = tmp_path / "tuner.toml"
    cfg.write_text("[observe]\ninterval = " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert main(["daemon", "--config", str(cfg), "--check-config"]) == 2
    assert "nested more than" in capsys.readouterr().err


def test_check_config_of_an_endless_device_is_refused_without_reading_it(capsys):
    assert main(["daemon", "--config", "/dev/zero", "--check-config"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_config_numbers_must_be_finite(tmp_path, capsys):
    cfg = tmp_path / "tuner.toml"
    for value in ("inf", "nan", "1" + "0" * 400):
        cfg.write_text(f"[guard]\nmax_rtt_increase = {value}\n")
        assert main(["daemon", "--config", str(cfg), "--check-config"]) == 2
        assert "guard.max_rtt_increase" in capsys.readouterr().err


def test_a_deeply_nested_state_file_is_set_aside_not_fatal(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _state, problem = load_state(path)
    assert problem and "set aside" in problem and "nested more than" in problem
    assert not path.exists()


def test_nesting_is_measured_without_recursion():
    doc: list = []
    node = doc
    for _ in range(100_000):
        node.append([])
        node = node[0]
    with pytest.raises(TooDeep) as info:
        check_nesting(doc)
    assert len(info.value.path) == MAX_NESTING + 1
    check_nesting({"a": {"b": [1, 2, {"c": 3}]}})


def test_parsers_refuse_depth_and_json_constants():
    with pytest.raises(TooDeep):
        parse_toml("a = " + "[" * 30 + "]" * 30)
    with pytest.raises(TooDeep):
        parse_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="NaN"):
        parse_json('{"x": NaN}')
    assert parse_json('{"x": Infinity}', allow_nan=True) == {"x": float("inf")}


def test_bounds_name_the_range_and_never_echo_a_huge_number():
    with pytest.raises(InputError, match=r"out of range \(0, 5\]"):
        bounded(0, 0, 5, "x", lo_open=True)
    with pytest.raises(InputError) as info:
        bounded_int(10**5000, 1, 10, "y")
    assert len(info.value.message) < 120
    with pytest.raises(InputError, match="expected a number"):
        bounded(True, 0, 1, "z")


def test_models_refuse_non_finite_and_huge_values():
    with pytest.raises(InputError):
        NetPath(rtt=float("inf"))
    with pytest.raises(InputError):
        NetPath(rate_bps=float("nan"))
    with pytest.raises(InputError):
        Workload(WorkloadKind.RR, connections=10**400)
    with pytest.raises(InputError):
        Workload.from_dict({"kind": "udp", "udp_rate": 0})
    assert NetPath(rtt=0.2, rate_bps=20e9).rate_bps == 20e9  # beyond the emulator, but a real link


def test_the_journal_refuses_nesting_without_a_traceback(tmp_path):
    from tuner.errors import StateError
    from tuner.search.journal import SearchJournal

    path = tmp_path / "j.jsonl"
    path.write_text(
        json.dumps({"type": "header", "version": 1}) + "\n" + "[" * 50_000 + "]" * 50_000 + "\n" + "{}\n"
    )
    with pytest.raises(StateError, match="line 2 is damaged"):
        SearchJournal.resume(path, {})
