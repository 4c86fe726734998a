from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tuner.apply import Target, run_in_target, verify
from tuner.knobs import SysctlTree
from tuner.profiles import Profile, load_profile, render_nginx_listen, render_socket_snippets, render_sysctl_d

EXAMPLE = (
    Path(__file__).resolve().parent / "data" / "hand-written-example.toml"
)  # mechanics only: no evidence


def test_sysctl_d_has_one_key_value_line_per_sysctl_in_kernel_format():
    p = Profile(
        name="x",
        sysctl={
            "net.ipv4.tcp_rmem": [4096, 131072, 6291456],
            "net.core.somaxconn": 4096,
            "net.ipv4.tcp_slow_start_after_idle": False,
            "net.core.rmem_max": 8388608,
        },
        socket={"TCP_NODELAY": True},
    )
    settings = [line for line in render_sysctl_d(p).splitlines() if line and not line.startswith("#")]
    assert settings == [
        "net.core.somaxconn = 4096",
        "net.ipv4.tcp_rmem = 4096 131072 6291456",
        "net.ipv4.tcp_slow_start_after_idle = 0",
        "net.core.rmem_max = 8388608",
    ]


def test_a_profile_without_sysctls_renders_a_file_that_says_so():
    text = render_sysctl_d(Profile(name="x", socket={"TCP_NODELAY": True}))
    assert all(line.startswith("#") for line in text.splitlines())
    assert "no kernel settings" in text


def test_the_python_lines_give_real_sockets_the_profile_settings():
    profile = load_profile(EXAMPLE)
    text = render_socket_snippets(profile)
    code = text.split("# --- Python ---\n")[1].split("# --- nginx")[0]
    with socket.socket() as sock, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        exec(compile(code, "snippet", "exec"), {"sock": sock, "listener": listener})
        tcp = socket.IPPROTO_TCP
        assert sock.getsockopt(tcp, socket.TCP_NODELAY) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(tcp, socket.TCP_KEEPIDLE) == profile.socket["TCP_KEEPIDLE"]
        assert sock.getsockopt(tcp, socket.TCP_KEEPINTVL) == profile.socket["TCP_KEEPINTVL"]
        assert sock.getsockopt(tcp, socket.TCP_KEEPCNT) == profile.socket["TCP_KEEPCNT"]
        assert sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT) == profile.socket["TCP_USER_TIMEOUT"]
        assert sock.getsockopt(tcp, socket.TCP_NOTSENT_LOWAT) == profile.socket["TCP_NOTSENT_LOWAT"]
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_python_lines_pass_the_congestion_control_as_bytes():
    text = render_socket_snippets(Profile(name="x", socket={"TCP_CONGESTION": "reno", "SO_RCVBUF": 262144}))
    assert "sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b'reno')" in text
    assert "sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 262144)" in text


def test_nginx_gets_listen_parameters_and_tcp_nodelay():
    text = render_nginx_listen(
        {
            "backlog": 4096,
            "SO_RCVBUF": 262144,
            "SO_SNDBUF": 131072,
            "SO_KEEPALIVE": True,
            "TCP_KEEPIDLE": 60,
            "TCP_KEEPCNT": 5,
            "TCP_NODELAY": True,
            "TCP_CONGESTION": "reno",
        }
    )
    lines = text.splitlines()
    assert lines[0] == "listen 80 backlog=4096 rcvbuf=262144 sndbuf=131072 so_keepalive=60::5;"
    assert lines[1] == "tcp_nodelay on;"
    assert "TCP_CONGESTION=reno" in lines[2]
    assert render_nginx_listen({"SO_KEEPALIVE": False}).startswith("listen 80 so_keepalive=off;")


def test_a_profile_without_socket_settings_says_so():
    assert "no socket settings" in render_socket_snippets(Profile(name="x"))


def _netns_only_profile() -> Profile:
    return Profile(
        name="netns-only",
        sysctl={
            "net.core.somaxconn": 1234,
            "net.ipv4.tcp_rmem": [4096, 65536, 1048576],
            "net.ipv4.tcp_slow_start_after_idle": False,
        },
    )


@pytest.mark.root
def test_sysctl_reads_the_rendered_file_into_a_namespace_and_verify_agrees(netns, tmp_path):
    profile = _netns_only_profile()
    conf = tmp_path / "90-tuner.conf"
    conf.write_text(render_sysctl_d(profile))
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-p", str(conf)], check=True)
    assert run_in_target(Target(netns), verify, profile, SysctlTree(), target=Target(netns)) == []
