"""An assignment's socket options: which go where, and what the kernel gives the socket."""

from __future__ import annotations

import os
import socket

import pytest

from tuner.probe.sockopts import SO_RCVBUFFORCE, HostLimits, SocketOptions

KiB, MiB = 1024, 1024 * 1024
LIMITS = HostLimits(rmem_max=212992, wmem_max=212992, rmem_default=212992, wmem_default=212992)


def test_a_receive_buffer_is_capped_by_the_assignments_rmem_max_else_the_hosts():
    assert SocketOptions.from_assignment({"SO_RCVBUF": 4 * MiB}, LIMITS).rcvbuf_force == 212992
    opts = SocketOptions.from_assignment({"SO_RCVBUF": 4 * MiB, "net.core.rmem_max": 8 * MiB}, LIMITS)
    assert opts.rcvbuf_force == 4 * MiB
    assert SocketOptions.from_assignment({"SO_SNDBUF": 64 * KiB}, LIMITS).sndbuf_force == 64 * KiB


def test_host_defaults_are_halved_because_the_kernel_doubles_a_forced_buffer():
    opts = SocketOptions.from_assignment(
        {"net.core.rmem_default": 32 * KiB, "net.core.wmem_default": 64 * KiB}, LIMITS
    )
    assert opts.udp_rcvbuf_force == 16 * KiB and opts.udp_sndbuf_force == 32 * KiB
    assert opts.rcvbuf_force is None  # TCP takes its default from tcp_rmem, not rmem_default


def test_dead_peer_options_are_kept_apart_and_quickack_is_not_a_sticky_option():
    opts = SocketOptions.from_assignment(
        {
            "TCP_NODELAY": True,
            "SO_KEEPALIVE": True,
            "TCP_KEEPIDLE": 5,
            "TCP_USER_TIMEOUT": 3000,
            "TCP_QUICKACK": True,
            "backlog": 64,
        },
        LIMITS,
    )
    assert {opt for _, opt, _ in opts.stream} == {socket.TCP_NODELAY}
    assert {opt for _, opt, _ in opts.dead_peer} == {socket.SO_KEEPALIVE, socket.TCP_KEEPIDLE, 18}
    assert opts.quickack and opts.backlog == 64


def test_sysctls_are_not_socket_options_and_unemulated_host_knobs_are_named():
    opts = SocketOptions.from_assignment({"net.ipv4.tcp_rmem": (4096, 131072, 6 * MiB)}, LIMITS)
    assert opts == SocketOptions.from_assignment({}, LIMITS)
    assert SocketOptions.unemulated(
        {"net.core.netdev_max_backlog": 5000, "net.core.rmem_max": 8 * MiB, "TCP_NODELAY": True}
    ) == ["net.core.netdev_max_backlog"]


def test_host_limits_are_read_from_the_live_tree(fake_proc_sys):
    from tuner.knobs import SysctlTree

    (fake_proc_sys / "net" / "core" / "rmem_max").write_text("4194304\n")
    limits = HostLimits.read(SysctlTree(fake_proc_sys))
    assert limits.rmem_max == 4194304 and limits.wmem_max == 212992


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs CAP_NET_ADMIN")


@needs_root
def test_a_socket_gets_the_buffer_a_host_limit_would_give_it():
    opts = SocketOptions.from_assignment(
        {
            "SO_RCVBUF": 4 * MiB,
            "net.core.rmem_max": 1 * MiB,
            "SO_SNDBUF": 256 * KiB,
            "net.core.wmem_max": 8 * MiB,
            "TCP_NODELAY": True,
            "TCP_CONGESTION": "reno",
        },
        LIMITS,
    )
    with socket.socket() as s:
        opts.client(s)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * MiB  # min(4 MiB, 1 MiB), doubled
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 512 * KiB
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0") == b"reno"


@needs_root
def test_a_udp_socket_gets_the_emulated_rmem_default_and_tcp_sockets_do_not():
    opts = SocketOptions.from_assignment({"net.core.rmem_default": 32 * KiB}, LIMITS)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        before = t.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        opts.datagram(u)
        opts.client(t)
        assert u.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 32 * KiB
        assert t.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == before


@needs_root
def test_dead_peer_options_go_only_where_asked():
    opts = SocketOptions.from_assignment({"SO_KEEPALIVE": True, "TCP_KEEPIDLE": 7}, LIMITS)
    with socket.socket() as a, socket.socket() as b:
        opts.client(a, dead_peer=False)
        opts.client(b)
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        assert b.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert b.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
    assert SO_RCVBUFFORCE == 33
