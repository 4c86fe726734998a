"""`tuner status` and the request forms of `tuner daemon`, and what the daemon process imports."""

from __future__ import annotations

import json
import subprocess
import sys

from tuner.cli import main
from tuner.daemon.state import DaemonState, ManualKnob, ProfileRecord, save_state
from tuner.daemon.watch import SearchQueue


def _state(tmp_path):
    state = DaemonState(
        pid=0,
        mode="recommend",
        config="/etc/tuner/tuner.toml",
        activity="recommend mode, watching 1 service",
        profiles=[
            ProfileRecord(
                "web",
                str(tmp_path / "web.toml"),
                "tcp server :80",
                1.0,
                "new service",
                {"gain": "latency_p99_ms 40x better"},
            )
        ],
        manual={"net.core.somaxconn": ManualKnob(2.0, 4096, 128, "/etc/sysctl.d/99-x.conf:1 sets it to 128")},
        queue=SearchQueue(),
        last_observation={
            "at": 3.0,
            "services": [
                {
                    "key": "tcp server :80",
                    "process": "nginx[7]",
                    "class": "connection churn",
                    "path": "rtt 1 ms",
                    "symptoms": [{"name": "listen-overflow", "evidence": "...", "knobs": ["backlog"]}],
                }
            ],
        },
    )
    save_state(state, tmp_path / "state.json")


def test_status_prints_what_the_daemon_sees_wrote_and_left_alone(tmp_path, capsys):
    _state(tmp_path)
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not running" in out
    assert "tcp server :80" in out and "listen-overflow" in out and "nginx[7]" in out
    assert "latency_p99_ms 40x better" in out
    assert "net.core.somaxconn" in out and "99-x.conf" in out


def test_status_json_has_the_whole_state(tmp_path, capsys):
    _state(tmp_path)
    assert main(["status", "--json", "--state-dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["running"] is False and data["manual"]["net.core.somaxconn"]["found"] == 128


def test_status_without_state_is_an_environment_problem(tmp_path, capsys):
    assert main(["status", "--state-dir", str(tmp_path / "none")]) == 3
    assert "has not run" in capsys.readouterr().err


def test_status_of_a_garbled_state_file_fails_with_its_name(tmp_path, capsys):
    (tmp_path / "state.json").write_text("{nope")
    assert main(["status", "--state-dir", str(tmp_path)]) == 1
    assert "state.json" in capsys.readouterr().err


def test_release_of_an_unknown_knob_is_bad_input(tmp_path, capsys):
    assert main(["daemon", "--state-dir", str(tmp_path), "--release", "kernel.core_pattern"]) == 2
    assert not (tmp_path / "control").exists()


def test_release_writes_a_request_the_daemon_picks_up(tmp_path, capsys):
    assert main(["daemon", "--state-dir", str(tmp_path), "--release", "net.core.somaxconn"]) == 0
    assert (
        json.loads((tmp_path / "control" / "release-net.core.somaxconn.json").read_text())["knob"]
        == "net.core.somaxconn"
    )
    assert "not running" in capsys.readouterr().out


def test_stage_refuses_a_bad_profile_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[profile]\nname = "x"\n[sysctl]\n"kernel.core_pattern" = "|/bin/sh"\n')
    assert main(["daemon", "--state-dir", str(tmp_path), "--stage", str(bad)]) == 2
    assert "bad.toml" in capsys.readouterr().err
    assert not (tmp_path / "inbox").exists()


def test_check_config_reports_a_bad_file_with_exit_2(tmp_path, capsys):
    cfg = tmp_path / "tuner.toml"
    cfg.write_text('mode = "sometimes"\n')
    assert main(["daemon", "--config", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "[mode]" in err


def test_the_daemon_process_never_imports_the_search_stack():
    """Everything `tuner daemon` imports to run its loop, in a fresh interpreter: no numpy, no skopt."""
    code = (
        "import sys, tuner.cli; tuner.cli.build_parser(); import tuner.daemon.loop, tuner.daemon.sample, "
        "tuner.daemon.runner, tuner.daemon.searcher, tuner.observe; tuner.observe.Observer; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'skopt', 'scipy', 'sklearn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # and the check can fail: what the search child does (a GP optimiser) loads them
    code2 = (
        "import sys; from tuner.adapters.skopt import GaussianProcessOptimizer, LevelDimension; "
        "GaussianProcessOptimizer([LevelDimension(4)], seed=0, initial_points=1); "
        "print('numpy' in sys.modules and 'skopt' in sys.modules)"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code2], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "True"
    )


def test_print_default_config_is_the_documented_file_and_valid(tmp_path, capsys):
    from tuner.daemon.config import load_config, parse_config

    assert main(["daemon", "--print-default-config"]) == 0
    text = capsys.readouterr().out
    assert "Precedence" in text
    (tmp_path / "tuner.toml").write_text(text)
    assert load_config(tmp_path / "tuner.toml").search == parse_config(None).search
