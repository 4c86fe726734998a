"""Prometheus metrics: the families built from the state, `tuner status --prometheus`, the [metrics]
config section and a port that cannot be bound. The live /metrics endpoint, whose counters move with a
search, is checked in test_daemon_service.py beside the search it counts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_daemon_state import full_state

from tuner.cli import main
from tuner.daemon.config import parse_config
from tuner.daemon.metrics import METRIC_NAMES, render
from tuner.daemon.state import save_state
from tuner.errors import ConfigError


def samples(text: str) -> dict[str, list]:
    """metric sample name -> [(labels, value)], parsed by prometheus_client's own parser."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _state():
    state = full_state()
    state.profiles[0].summary.update(
        {
            "gains": {"latency_p99_ms": 40.5},
            "significant": True,
            "path_health": {"late_p99_ms": 0.12, "dropped": 0.0, "cpu_s": 1.5},
        }
    )
    state.last_observation = {
        "at": 7.0,
        "services": [{"key": "tcp server :80", "symptoms": [{"name": "listen-overflow"}]}],
    }
    state.stats.count_search("rr", "profile", 42.0, trials=9, invalid=1)
    state.stats.count_search("rr", "failed", 3.0)
    state.stats.rollbacks["rolled back"] = 1
    return state


def test_the_state_renders_as_parseable_prometheus_text_with_every_documented_name():
    got = samples(render(_state(), loop_lag=0.25))
    assert ({"kind": "rr", "result": "profile"}, 1.0) in got["tuner_searches_total"]
    assert got["tuner_trials_total"] == [({"kind": "rr"}, 9.0)]
    assert got["tuner_invalid_trials_total"] == [({"kind": "rr"}, 1.0)]
    assert got["tuner_search_duration_seconds_sum"] == [({"kind": "rr"}, 45.0)]
    assert got["tuner_search_duration_seconds_count"] == [({"kind": "rr"}, 2.0)]
    assert got["tuner_profile_gain_ratio"] == [({"profile": "p", "metric": "latency_p99_ms"}, 40.5)]
    assert got["tuner_service_symptom"] == [
        ({"service": "tcp server :80", "symptom": "listen-overflow"}, 1.0)
    ]
    assert got["tuner_path_late_p99_seconds"][0][1] == pytest.approx(0.00012)
    assert got["tuner_loop_lag_seconds"] == [({}, 0.25)]
    assert got["tuner_knobs_manual"] == [({}, 1.0)]
    documented = {name for name, _, _ in METRIC_NAMES}
    exposed = {name.removesuffix("_sum").removesuffix("_count") for name in got}
    assert exposed <= documented | {"tuner_info"}, exposed - documented
    assert documented - exposed == set(), documented - exposed


def test_status_prometheus_prints_the_same_text_from_the_state_file(tmp_path, capsys):
    save_state(_state(), tmp_path / "state.json")
    assert main(["status", "--prometheus", "--state-dir", str(tmp_path)]) == 0
    got = samples(capsys.readouterr().out)
    assert ({"kind": "rr", "result": "failed"}, 1.0) in got["tuner_searches_total"]


def test_a_config_with_only_a_metrics_section_is_valid_and_the_address_is_checked():
    cfg = parse_config('[metrics]\nlisten = "127.0.0.1:9464"\n')
    assert cfg.metrics.listen == ("127.0.0.1", 9464) and cfg.search.budget == parse_config(None).search.budget
    assert parse_config('[metrics]\nlisten = "[::1]:9464"\n').metrics.listen == ("::1", 9464)
    assert parse_config(None).metrics.listen is None
    for bad in ("nohost:80", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1"):
        with pytest.raises(ConfigError, match="metrics.listen"):
            parse_config(f'[metrics]\nlisten = "{bad}"\n')


@pytest.mark.root
def test_a_port_in_use_is_reported_and_the_daemon_keeps_running(run_daemon):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        d = run_daemon(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        s = d.wait_state(
            lambda s: any("metrics: cannot listen" in p for p in s["problems"]),
            30,
            "the bind failure in the state's problems",
        )
        assert s["pid"] == d.pid
        d.wait_state(lambda s: s["last_observation"], 30, "an observation after the failed bind")
    code, _ = d.stop()
    assert code == 0


def test_the_readme_documents_every_metric():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name, _, _ in METRIC_NAMES if f"`{name}`" not in readme]
    assert not missing, f"README's metrics table lacks {missing}"
