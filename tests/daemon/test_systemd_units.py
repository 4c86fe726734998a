"""The systemd units: `systemd-analyze verify` passes (when available) and the hardening is in place."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
INSTALLED = "/usr/local/bin/tuner"


def _parse(path: Path) -> configparser.RawConfigParser:
    p = configparser.RawConfigParser(strict=False, interpolation=None)
    p.optionxform = str  # keys are case-sensitive
    p.read_string(path.read_text())
    return p


def _executable(tmp_path: Path) -> str:
    """A real executable standing for the installed `tuner` (verify checks that ExecStart exists)."""
    found = shutil.which("tuner")
    if found:
        return found
    wrapper = tmp_path / "tuner"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m tuner "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(
    "unit, instance",
    [("tuner.service", "tuner.service"), ("tuner-apply@.service", "tuner-apply@web.service")],
)
def test_systemd_analyze_verify_passes_without_warnings(tmp_path, unit, instance):
    text = (UNITS / unit).read_text()
    assert INSTALLED in text
    (tmp_path / unit).write_text(text.replace(INSTALLED, _executable(tmp_path)))
    res = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / instance)], capture_output=True, text=True, timeout=60
    )
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if str(tmp_path) in ln or unit in ln]
    assert res.returncode == 0, res.stderr
    assert ours == [], ours  # verify only warns (exit 0) about unknown keys and bad values


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_verify_would_catch_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt directive is reported."""
    text = (UNITS / "tuner.service").read_text().replace("NotifyAccess=main", "NotifyAccess=mainn")
    (tmp_path / "tuner.service").write_text(text.replace(INSTALLED, _executable(tmp_path)))
    res = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "tuner.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "notify access" in (res.stdout + res.stderr).lower()


def test_daemon_unit_is_a_hardened_notify_service():
    svc = _parse(UNITS / "tuner.service")
    s, u = svc["Service"], svc["Unit"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["WatchdogSec"] and s["Restart"] == "on-failure"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert s["KillMode"] == "mixed"
    assert set(s["CapabilityBoundingSet"].split()) == {
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",  # the sandbox path's ICMP echoes (tuner.sandbox.echo)
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_DAC_READ_SEARCH",
    }
    assert s["ProtectSystem"] == "strict" and s["NoNewPrivileges"] == "yes" and s["PrivateTmp"] == "yes"
    assert set(s["ReadWritePaths"].split()) == {"/var/lib/tuner", "/run/netns", "/run/tuner", "/proc/sys/net"}
    assert set(u["Conflicts"].split()) == {"tuned.service", "bpftune.service"}
    assert "systemd-sysctl.service" in u["After"]
    assert s["Nice"] and s["IOSchedulingClass"]
    # stop must fit: the daemon needs stop_grace (5 s) plus its own shutdown, well under 10 s
    assert int(s["TimeoutStopSec"].rstrip("s")) >= 10


def test_apply_unit_is_a_oneshot_that_rolls_back_on_stop():
    svc = _parse(UNITS / "tuner-apply@.service")
    s = svc["Service"]
    assert s["Type"] == "oneshot" and s["RemainAfterExit"] == "yes"
    assert "apply" in s["ExecStart"] and s["ExecStart"].endswith(" %i")  # the instance names a profile
    assert "rollback" in s["ExecStop"]
    # each instance keeps its own journal, so stopping one restores only its own changes
    assert "/var/lib/tuner/apply/%i" in s["ExecStart"] and "/var/lib/tuner/apply/%i" in s["ExecStop"]


def test_config_keys_the_units_mention_exist_in_the_default_config():
    import re
    import tomllib

    from tuner.daemon.config import default_config_text

    defaults = tomllib.loads(default_config_text())
    for unit in UNITS.glob("*.service"):
        for section, key in re.findall(r"\b(observe|search|apply|guard)\.([a-z_]+)\b", unit.read_text()):
            assert key in defaults[section], (
                f"{unit.name} mentions {section}.{key}, which tuner.toml does not have"
            )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit, limit", [("tuner.service", 3.5), ("tuner-apply@.service", 2.5)])
def test_security_exposure_is_within_its_limit(tmp_path, unit, limit):
    """tuner.service must still create namespaces and TUN devices (3.5); the apply unit only writes sysctls."""
    (tmp_path / unit).write_text((UNITS / unit).read_text().replace(INSTALLED, _executable(tmp_path)))
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert found, res.stdout + res.stderr
    assert float(found.group(1)) <= limit, res.stdout
    assert "SystemCallFilter=" in (UNITS / unit).read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_readme_service_steps_install_units_that_verify(tmp_path):
    """`tuner install-units` (the README's service step) writes units that run this tuner and verify."""
    done = subprocess.run(
        [sys.executable, "-m", "tuner", "install-units", "--dest", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    readme = (ROOT / "README.md").read_text()
    assert "tuner install-units" in readme
    for unit, instance in (
        ("tuner.service", "tuner.service"),
        ("tuner-apply@.service", "tuner-apply@web.service"),
    ):
        text = (tmp_path / unit).read_text()
        assert f"{sys.executable} -m tuner" in text and INSTALLED not in text
        if unit != instance:
            (tmp_path / instance).write_text(text)
        res = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / instance)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0 and str(tmp_path) not in res.stdout + res.stderr, res.stdout + res.stderr
