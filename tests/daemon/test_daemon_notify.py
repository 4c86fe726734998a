"""sd_notify over a real AF_UNIX datagram socket bound by the test."""

from __future__ import annotations

import os
import socket

import pytest

from tuner.daemon.notify import Notifier


@pytest.fixture
def listener(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_ready_status_and_watchdog_arrive_as_key_value_lines(listener):
    path, sock = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.ready("watching 0 services")
    msg = sock.recv(4096).decode()
    assert "READY=1\n" in msg and "STATUS=watching 0 services\n" in msg and f"MAINPID={os.getpid()}" in msg
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1\n"
    assert n.status("line one\nline two")
    assert sock.recv(4096) == b"STATUS=line one line two\n"
    assert n.reloading()
    assert b"RELOADING=1" in sock.recv(4096)
    n.close()


def test_abstract_socket_addresses_work():
    name = f"tuner-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert b"STOPPING=1" in sock.recv(4096)
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op():
    n = Notifier.from_env({})
    assert not n.enabled and not n.ready("x") and n.watchdog_period is None


def test_a_vanished_socket_is_tolerated(tmp_path):
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.ready("x") is False


def test_watchdog_period_is_half_the_interval_and_only_for_this_pid():
    assert Notifier.from_env({"WATCHDOG_USEC": "10000000"}).watchdog_period == 5.0
    assert (
        Notifier.from_env({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_period
        == 5.0
    )
    assert Notifier.from_env({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}).watchdog_period is None
    assert Notifier.from_env({"WATCHDOG_USEC": "junk"}).watchdog_period is None
