"""Process attribution by socket inode, and systemd units from cgroup paths."""

from __future__ import annotations

import os
import signal
import socket

from tuner.adapters.procs import SocketOwners, unit_from_cgroup


def test_units_come_from_the_cgroup_path():
    assert unit_from_cgroup("0::/system.slice/nginx.service\n") == "nginx.service"
    assert unit_from_cgroup("0::/user.slice/user-0.slice/session-4.scope\n") == "session-4.scope"
    assert unit_from_cgroup("0::/system.slice/docker-ab12.scope/init.scope\n") == "init.scope"
    v1 = "12:cpu,cpuacct:/system.slice/x.service\n1:name=systemd:/system.slice/sshd.service\n"
    assert unit_from_cgroup(v1) == "sshd.service"
    assert unit_from_cgroup("0::/\n") is None
    assert unit_from_cgroup("0::/user.slice\n") is None
    assert unit_from_cgroup("") is None


def test_a_socket_is_attributed_to_the_child_that_holds_it_and_remembered():
    a, b = socket.socketpair()
    inode = os.fstat(b.fileno()).st_ino
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        a.close()
        os.close(r)
        os.write(w, b"1")
        signal.pause()
        os._exit(0)
    try:
        os.close(w)
        os.read(r, 1)
        b.close()  # only the child holds it now
        owners = SocketOwners()
        found = owners.lookup([inode, 0])
        assert list(found) == [inode]
        assert found[inode].pid == pid and found[inode].name
        scans = owners.scans
        assert owners.lookup([inode])[inode].pid == pid
        assert owners.scans == scans  # answered from the cache
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        a.close()


def test_an_inode_no_process_holds_is_searched_once():
    owners = SocketOwners()
    gone = 2**32 - 7  # no socket has this inode
    assert owners.lookup([gone]) == {}
    scans = owners.scans
    assert owners.lookup([gone]) == {}
    assert owners.scans == scans
