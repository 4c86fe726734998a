"""Snapshots of a namespace the test creates: what sock_diag reports matches the sockets we made."""

from __future__ import annotations

import os
import socket
import time

import observe_scenarios as sc
import pytest

from tuner.adapters.procs import SocketOwners
from tuner.netns import run_in_netns
from tuner.observe import Observer, Proto, TcpState, Timer, take_snapshot
from tuner.observe.snapshot import collect

pytestmark = pytest.mark.root


def _sockets_and_snapshot() -> dict:
    """Inside the namespace: make known sockets, snapshot, and report what the sockets say about themselves."""
    ls4 = socket.socket()
    ls4.bind(("127.0.0.1", 6000))
    ls4.listen(7)
    pending = [socket.create_connection(("127.0.0.1", 6000)) for _ in range(3)]  # never accepted
    ls6 = socket.socket(socket.AF_INET6)
    ls6.bind(("::1", 6001))
    ls6.listen(16)
    c6 = socket.create_connection(("::1", 6001))
    s6, _ = ls6.accept()
    c6.sendall(b"x" * 100_000)
    got = 0
    while got < 100_000:
        got += len(s6.recv(1 << 16))
    # a UDP socket that drops: a 4 KiB buffer, 50 datagrams, nobody reads
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    u.bind(("127.0.0.1", 6002))
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u6.bind(("::1", 6003))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(50):
        tx.sendto(b"d" * 1000, ("127.0.0.1", 6002))
    # a TIME_WAIT: the client closes first
    tw_server = socket.socket()
    tw_server.bind(("127.0.0.1", 6004))
    tw_server.listen(1)
    twc = socket.create_connection(("127.0.0.1", 6004))
    tws, _ = tw_server.accept()
    twc.close()
    time.sleep(0.05)
    tws.close()
    time.sleep(0.05)
    snap = collect()
    return {
        "snap": snap,
        "inodes": {
            "ls4": os.fstat(ls4.fileno()).st_ino,
            "c6": os.fstat(c6.fileno()).st_ino,
            "u": os.fstat(u.fileno()).st_ino,
        },
        "c6_port": c6.getsockname()[1],
        "congestion": c6.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0")[0].decode(),
        "pending": len(pending),
    }


def test_a_snapshot_reports_states_queues_tcp_info_memory_and_drops(netns):
    r = run_in_netns(netns, _sockets_and_snapshot)
    snap = r["snap"]
    by_inode = {s.inode: s for s in snap.sockets if s.inode}

    ls4 = by_inode[r["inodes"]["ls4"]]
    assert (ls4.proto, ls4.family, ls4.state, ls4.local_port) == (Proto.TCP, 4, TcpState.LISTEN, 6000)
    assert (ls4.rqueue, ls4.wqueue) == (3, 7)  # accept queue now / its maximum

    c6 = by_inode[r["inodes"]["c6"]]
    assert (c6.family, c6.state, c6.local, c6.remote, c6.remote_port) == (
        6,
        TcpState.ESTABLISHED,
        "::1",
        "::1",
        6001,
    )
    assert c6.local_port == r["c6_port"] and c6.uid == 0
    assert c6.tcp is not None and c6.tcp.bytes_acked >= 100_000 and c6.tcp.data_segs_out > 0
    assert 0 < c6.tcp.min_rtt_us <= c6.tcp.rtt_us < 1_000_000 and c6.tcp.cwnd > 0
    assert c6.congestion == r["congestion"]
    assert c6.memory is not None and c6.memory.sndbuf > 0 and c6.memory.rcvbuf > 0
    peer = next(s for s in snap.sockets if s.local_port == 6001 and s.state is TcpState.ESTABLISHED)
    assert peer.tcp.bytes_received >= 100_000

    u = by_inode[r["inodes"]["u"]]
    assert (u.proto, u.local_port) == (Proto.UDP, 6002)
    assert u.memory.drops > 0 and u.memory.drops == snap.counters["Udp.RcvbufErrors"]
    assert u.memory.drops < 50 and u.rqueue > 0
    assert any(s.proto is Proto.UDP and s.family == 6 and s.local_port == 6003 for s in snap.sockets)

    (tw,) = [s for s in snap.sockets if s.state is TcpState.TIME_WAIT]
    assert tw.remote_port == 6004 and tw.inode == 0 and tw.timer is Timer.TIME_WAIT and tw.tcp is None
    assert "net.ipv4.ip_local_port_range" in snap.sysctls


def _hold_a_listener(ready) -> None:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 6100))
    ls.listen(4)
    ready()
    sc._forever()


def test_sockets_in_a_namespace_are_attributed_to_the_process_holding_them(netns):
    with sc.Background(netns, _hold_a_listener) as bg:
        holder = bg.pid
        snap = take_snapshot(netns)
    (listener,) = [s for s in snap.sockets if s.local_port == 6100]
    owner = snap.owners[listener.inode]
    assert owner.pid == holder and owner.name.startswith("python")
    assert snap.netns == netns and "net.core.rmem_max" in snap.sysctls  # host-wide value filled in


def test_an_observer_steps_interval_by_interval_without_rescanning_processes(netns):
    with sc.idle_connections(netns, count=3):
        observer = Observer(netns)
        try:
            assert observer.step() is None
            scans = observer.owners.scans
            time.sleep(0.2)
            obs = observer.step()
        finally:
            observer.close()
    assert obs is not None and 0.1 < obs.duration < 5
    assert {s.key for s in obs.services} == {"tcp server :5000", "tcp client -> 127.0.0.1:5000"}
    assert observer.owners.scans == scans  # the same sockets: their owners came from the cache


def test_an_observer_of_a_missing_namespace_says_which():
    from tuner.errors import NetnsNotFoundError

    with pytest.raises(NetnsNotFoundError, match="tuner-no-such-ns"):
        Observer("tuner-no-such-ns").step()


def test_owner_cache_forgets_closed_sockets():
    owners = SocketOwners()
    owners._owners = {1: object(), 2: object()}  # type: ignore[dict-item]
    owners._unowned = {3, 4}
    owners.retain({2, 3})
    assert set(owners._owners) == {2} and owners._unowned == {3}
