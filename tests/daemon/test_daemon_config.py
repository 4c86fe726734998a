"""The daemon's configuration: shipped defaults, merging, and errors that name the file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tuner.daemon import config as config_mod
from tuner.daemon.config import Mode, OnStop, ServiceSelection, default_config_text, load_config, parse_config
from tuner.errors import ConfigError


def test_shipped_default_file_parses_to_recommend_mode_with_empty_allow_list():
    cfg = parse_config(None)
    assert cfg.mode is Mode.RECOMMEND
    assert cfg.enabled is True
    assert cfg.apply.allow == frozenset()
    assert cfg.apply.on_stop is OnStop.KEEP
    assert cfg.observe.interval == 10.0
    assert cfg.observe.services is ServiceSelection.WITH_SYMPTOMS
    assert cfg.state_dir == Path("/var/lib/tuner")


def test_every_default_key_is_documented_by_a_comment_above_its_section():
    text = default_config_text()
    data = tomllib.loads(text)
    assert set(data) >= {"enabled", "mode", "state_dir", "observe", "search", "apply", "guard"}
    assert "Precedence" in text and "sysctl.d" in text


def test_missing_default_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_config(None) == parse_config(None)


def test_missing_explicit_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml" in str(info.value)


def test_user_file_overrides_only_the_keys_it_sets(tmp_path):
    f = tmp_path / "tuner.toml"
    f.write_text('mode = "apply"\n[apply]\nallow = ["net.core.somaxconn"]\n[observe]\ninterval = "500ms"\n')
    cfg = load_config(f)
    assert cfg.mode is Mode.APPLY
    assert cfg.apply.allow == {"net.core.somaxconn"}
    assert cfg.observe.interval == 0.5
    assert cfg.search == parse_config(None).search
    assert cfg.source == str(f)


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ('mode = "yolo"\n', "mode", "not allowed"),
        ('enabled = "yes"\n', "enabled", "true or false"),
        ('[observe]\nintervall = "1s"\n', "observe.intervall", "unknown key"),
        ('[observe]\ninterval = "10 parsecs"\n', "observe.interval", "duration"),
        ("[observe]\ninterval = -1\n", "observe.interval", "out of range"),
        ("[search]\nbudget = 0\n", "search.budget", "integer"),
        ('[search]\nio_class = "realtime"\n', "search.io_class", "not allowed"),
        ('[apply]\nallow = ["kernel.core_pattern"]\n', "apply.allow", "not a knob"),
        ('[apply]\nallow = ["TCP_NODELAY"]\n', "apply.allow", "socket setting"),
        ('[apply]\nallow = "net.core.somaxconn"\n', "apply.allow", "list of strings"),
        ('[apply]\non_stop = "shrug"\n', "apply.on_stop", "not allowed"),
        ('[guard]\ncounters = ["../../etc/passwd"]\n', "guard.counters", "not a counter"),
        ("observe = 3\n", "observe", "must be a table"),
        ('state_dir = "relative/dir"\n', "state_dir", "absolute"),
    ],
)
def test_invalid_values_are_rejected_naming_file_and_key(tmp_path, text, key, fragment):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    err = info.value
    assert err.file == str(f)
    assert err.key == key
    assert fragment in err.message
    assert str(f) in str(err) and key in str(err)


def test_unknown_key_suggests_the_close_one(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[search]\nbudgett = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert "search.budget" in (info.value.hint or "")


def test_toml_syntax_error_names_the_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("mode = \n")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert "broken.toml" in str(info.value) and "TOML" in str(info.value)


def test_binary_garbage_is_rejected(tmp_path):
    f = tmp_path / "garbage.toml"
    f.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(ConfigError):
        load_config(f)


def test_search_repeats_cannot_go_below_the_minimum_a_claim_needs():
    with pytest.raises(ConfigError) as info:
        parse_config("[search]\nrepeats = 3\n")
    assert "search.repeats" in str(info.value) and "5..100" in str(info.value)
    assert parse_config("[search]\nrepeats = 5\n").search.repeats == 5
    assert parse_config(None).search.repeats >= 5
