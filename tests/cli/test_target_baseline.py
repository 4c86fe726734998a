"""The baseline is the target's own configuration: a namespace's live sysctls reach the sandbox and the
profile's evidence, whatever this host has set."""

from __future__ import annotations

import json
import subprocess
import tomllib

import pytest

from tuner.probe.target import read_target

pytestmark = pytest.mark.root


def _sysctl(ns: str, name: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{name}={value}"], check=True)


def _other_algorithm() -> str:
    """An algorithm a namespace may select that is not this host's default: cubic where allowed
    (the stock-distro case of the issue), else another allowed one."""
    allowed = open("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read().split()
    host = open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip()
    others = [a for a in allowed if a != host]
    if not others:
        pytest.skip(f"only {host} is allowed in a namespace here")
    return "cubic" if "cubic" in others else others[0]


@pytest.fixture
def target_ns(netns):
    algorithm = _other_algorithm()
    _sysctl(netns, "net.ipv4.tcp_congestion_control", algorithm)
    _sysctl(netns, "net.core.somaxconn", "64")
    return netns, algorithm


def test_read_target_reads_the_namespace_not_the_host(target_ns):
    ns, algorithm = target_ns
    target = read_target(ns)
    assert target.source == f"netns {ns}"
    assert target.netns["net.ipv4.tcp_congestion_control"] == algorithm
    assert target.sandbox_sysctls()["net.core.somaxconn"] == 64
    assert "net.ipv4.tcp_no_metrics_save" not in target.sandbox_sysctls()  # the sandbox's own hygiene
    assert read_target().netns["net.ipv4.tcp_congestion_control"] != algorithm


def test_probe_measures_with_the_namespace_baseline(cli, target_ns):
    ns, algorithm = target_ns
    r = cli("probe", "bulk", "--netns", ns, "--repeats", "1", "--duration", "0.2", "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["baseline"]["source"] == f"netns {ns}"
    settings = m["baseline"]["settings"]  # read back live inside the sandbox during the measurement
    assert settings["net.ipv4.tcp_congestion_control"] == algorithm
    assert settings["net.core.somaxconn"] == 64


def test_probe_settings_override_the_copied_baseline(cli, target_ns):
    ns, _ = target_ns
    r = cli(
        "probe",
        "bulk",
        "--netns",
        ns,
        "--set",
        "net.core.somaxconn=128",
        "--repeats",
        "1",
        "--duration",
        "0.2",
        "--json",
    )
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["assignment"] == {"net.core.somaxconn": 128}
    assert "net.core.somaxconn" not in m["baseline"]["settings"]  # set by the assignment, not the baseline


def test_recommend_profile_records_the_namespace_baseline(cli, target_ns, tmp_path, nagle_fix_only):
    ns, algorithm = target_ns
    out = tmp_path / "p.toml"
    # rr with split writes: a light load generator (Nagle-bound), so a busy machine cannot invalidate it;
    # one knob: the baseline is what is checked, not the search
    r = cli(
        "recommend",
        "rr",
        "--netns",
        ns,
        *nagle_fix_only,
        "--budget",
        "1",
        "--repeats",
        "1",
        "--duration",
        "0.2",
        "-o",
        out,
    )
    assert r.code == 0, r.err
    baseline = tomllib.loads(out.read_text())["evidence"]["baseline"]
    assert baseline["source"] == f"netns {ns}"
    assert baseline["settings"]["net.ipv4.tcp_congestion_control"] == algorithm
    assert baseline["settings"]["net.core.somaxconn"] == 64
    assert "net.core.rmem_max" in baseline["settings"]  # host-only: the host's, emulated per socket


def test_probe_of_a_missing_namespace_exits_with_a_hint(cli):
    r = cli("probe", "bulk", "--netns", "tuner-no-such-ns", "--repeats", "1", "--duration", "0.2")
    assert r.code != 0 and "tuner-no-such-ns" in r.err and "Traceback" not in r.err


def test_an_algorithm_a_namespace_may_not_select_is_set_per_socket(monkeypatch):
    """A described target (say cubic on a host that allows namespaces only reno and bbr): the sandbox
    namespace keeps its own, every probe socket gets TCP_CONGESTION, and the evidence shows cubic."""
    import tuner.probe.target as target_module

    monkeypatch.setattr(target_module, "namespace_algorithms", lambda: frozenset({"reno", "bbr"}))
    target = read_target().with_values({"net.ipv4.tcp_congestion_control": "cubic"}, source="described")
    assert "net.ipv4.tcp_congestion_control" not in target.sandbox_sysctls()
    assert target.socket_emulation() == {"TCP_CONGESTION": "cubic"}
    assert target.emulated_sysctls() == {"net.ipv4.tcp_congestion_control": "cubic"}
    monkeypatch.setattr(target_module, "namespace_algorithms", lambda: frozenset({"reno", "cubic"}))
    assert (
        target.socket_emulation() == {}
        and target.sandbox_sysctls()["net.ipv4.tcp_congestion_control"] == "cubic"
    )
