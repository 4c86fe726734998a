"""Respecting the administrator: sysctl.d sources and values changed behind the daemon's back."""

from __future__ import annotations

from tuner.daemon.admin import (
    describe_writer,
    find_overrides,
    other_tuners,
    parse_sysctl_conf,
    sysctl_sources,
)


def test_parse_sysctl_conf_handles_comments_dashes_and_slashes():
    text = "# c\n; c\nnet.core.somaxconn = 1024\n-net.ipv4.tcp_fin_timeout=30\nnet/ipv4/tcp_rmem = 4096 87380 6291456\n"
    assert parse_sysctl_conf(text) == [
        (3, "net.core.somaxconn", "1024"),
        (4, "net.ipv4.tcp_fin_timeout", "30"),
        (5, "net.ipv4.tcp_rmem", "4096 87380 6291456"),
    ]


def test_sources_follow_systemd_precedence_and_globs(tmp_path):
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir(), lib.mkdir()
    (lib / "50-x.conf").write_text("net.core.somaxconn = 1\n")
    (etc / "50-x.conf").write_text("net.core.somaxconn = 2\n")  # same name: hides the /usr/lib one
    (lib / "60-y.conf").write_text("net.ipv4.tcp_*_timeout = 9\nnet.core.rmem_max = 5\n")
    conf = tmp_path / "sysctl.conf"
    conf.write_text("net.core.somaxconn = 3\n")
    found = sysctl_sources("net.core.somaxconn", dirs=(etc, lib), conf=conf)
    assert [(s.file, s.value) for s in found] == [(str(etc / "50-x.conf"), "2"), (str(conf), "3")]
    [glob] = sysctl_sources("net.ipv4.tcp_fin_timeout", dirs=(etc, lib), conf=None)
    assert glob.value == "9"
    assert sysctl_sources("net.ipv4.tcp_tw_reuse", dirs=(etc, lib), conf=None) == []


def test_overrides_are_values_that_differ_from_what_the_daemon_set():
    owned = {"net.core.somaxconn": 4096, "net.ipv4.tcp_rmem": [4096, 131072, 8388608], "net.x": 1}
    live = {"net.core.somaxconn": 128, "net.ipv4.tcp_rmem": (4096, 131072, 8388608), "net.x": None}
    assert find_overrides(owned, live) == {"net.core.somaxconn": (4096, 128)}


def test_writer_description_names_the_file_or_says_unknown(tmp_path):
    (tmp_path / "90-a.conf").write_text("net.core.somaxconn = 7\n")
    sources = sysctl_sources("net.core.somaxconn", dirs=(tmp_path,), conf=None)
    assert "90-a.conf:1 sets it to 7" in describe_writer("net.core.somaxconn", sources, [])
    assert "unknown writer" in describe_writer("k", [], [])
    assert "tuned (pid 5)" in describe_writer("k", [], ["tuned (pid 5)"])


def test_other_tuners_reads_comm_of_processes(tmp_path):
    for pid, comm in (("10", "tuned"), ("11", "bash"), ("12", "bpftune")):
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "comm").write_text(comm + "\n")
    (tmp_path / "self").mkdir()
    assert other_tuners(tmp_path) == ["bpftune (pid 12)", "tuned (pid 10)"]
