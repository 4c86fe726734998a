"""Real workloads for the observe tests and for recording fixtures (tests/observe/record_fixtures.py).

Each scenario starts its servers and clients as forked children inside a namespace the caller created
(they call tuner.netns.enter_netns), and every child is killed and reaped when the ``with`` block ends.
Only loopback traffic inside that namespace, or across a tuner Sandbox.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator

from tuner.netns import enter_netns
from tuner.observe import Observation, ServiceSignature

PORT = 5000
UDP_PORT = 9000


def service(obs: Observation, key: str) -> ServiceSignature:
    """The service ``key`` of an observation (an assertion error lists the keys there are)."""
    found = [s for s in obs.services if s.key == key]
    assert found, f"no service {key!r} in {[s.key for s in obs.services]}"
    return found[0]


def names(svc: ServiceSignature) -> set[str]:
    return {s.name for s in svc.symptoms}


class Background:
    """``fn(ready, *args)`` in a forked child inside ``netns``; ``ready()`` tells the parent it may go on."""

    def __init__(self, netns: str, fn: Callable[..., object], *args: object) -> None:
        self.netns, self.fn, self.args = netns, fn, args
        self.pid = 0

    def __enter__(self) -> Background:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            status = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                enter_netns(self.netns)
                self.fn(lambda: os.write(w, b"1"), *self.args)
            except BaseException:  # noqa: BLE001 - report and leave; the parent checks readiness
                traceback.print_exc(file=sys.stderr)
                status = 1
            os._exit(status)
        os.close(w)
        self.pid = pid
        try:
            ready, _, _ = select.select([r], [], [], 10.0)
            if not ready or os.read(r, 1) != b"1":
                self._stop()
                raise RuntimeError(f"background {self.fn.__name__} did not start")
        finally:
            os.close(r)
        return self

    def _stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0

    def __exit__(self, *exc: object) -> None:
        self._stop()


def _listener(
    port: int, backlog: int, *, rcvbuf: int | None = None, keepalive: bool = False, host: str = "127.0.0.1"
) -> socket.socket:
    ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if keepalive:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    ls.bind((host, port))
    ls.listen(backlog)
    return ls


def _forever() -> None:
    while True:
        time.sleep(3600)


# --- listen overflow: a tiny backlog, a slow acceptor and a burst of connects ----------------------


def slow_acceptor(ready: Callable[[], object], backlog: int, accept_every: float) -> None:
    ls = _listener(PORT, backlog)
    ready()
    while True:
        time.sleep(accept_every)
        conn, _ = ls.accept()
        conn.close()


def connect_burst(ready: Callable[[], object], count: int, delay: float, host: str = "127.0.0.1") -> None:
    ready()
    time.sleep(delay)
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((host, PORT))
        socks.append(s)
    _forever()


@contextlib.contextmanager
def listen_overflow(
    netns: str, *, backlog: int = 2, connects: int = 300, delay: float = 0.2
) -> Iterator[None]:
    with Background(netns, slow_acceptor, backlog, 0.05), Background(netns, connect_burst, connects, delay):
        yield


# --- Nagle: write-write-read request/response with small writes ---------------------------------


def _serve_rr(conn: socket.socket, request: int, response: int) -> None:
    payload = b"r" * response
    with contextlib.suppress(OSError):
        while True:
            got = 0
            while got < request:
                chunk = conn.recv(request - got)
                if not chunk:
                    return
                got += len(chunk)
            conn.sendall(payload)


def rr_server(ready: Callable[[], object], request: int, response: int) -> None:
    ls = _listener(PORT, 64)
    ready()
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=_serve_rr, args=(conn, request, response), daemon=True).start()


def _rr_loop(s: socket.socket, header: int, body: int, response: int) -> None:
    h, b = b"h" * header, b"b" * body
    while True:
        s.sendall(h)
        s.sendall(b)
        got = 0
        while got < response:
            got += len(s.recv(response - got))


def rr_client(
    ready: Callable[[], object], connections: int, header: int, body: int, response: int, nodelay: bool
) -> None:
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", PORT))
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    for s in socks:
        threading.Thread(target=_rr_loop, args=(s, header, body, response), daemon=True).start()
    ready()
    _forever()


@contextlib.contextmanager
def nagle_rr(netns: str, *, nodelay: bool = False, connections: int = 4) -> Iterator[None]:
    with (
        Background(netns, rr_server, 200, 100),
        Background(netns, rr_client, connections, 100, 100, 100, nodelay),
    ):
        yield


# --- UDP: a burst sender into a slow reader with a small receive buffer -------------------------


def udp_reader(ready: Callable[[], object], rcvbuf: int, per_read_sleep: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(("127.0.0.1", UDP_PORT))
    ready()
    while True:
        s.recv(65536)
        time.sleep(per_read_sleep)


def udp_sender(ready: Callable[[], object], rate: float, size: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", UDP_PORT))
    payload = b"u" * size
    ready()
    gap = 1.0 / rate
    next_at = time.monotonic()
    while True:
        for _ in range(50):
            with contextlib.suppress(ConnectionRefusedError):
                s.send(payload)
        next_at += 50 * gap
        time.sleep(max(0.0, next_at - time.monotonic()))


@contextlib.contextmanager
def udp_drops(netns: str, *, rate: float = 5000.0, size: int = 1000) -> Iterator[None]:
    with Background(netns, udp_reader, 4096, 0.005), Background(netns, udp_sender, rate, size):
        yield


# --- idle connections, with or without keepalive -------------------------------------------------


def idle_pairs(ready: Callable[[], object], count: int, keepalive: bool) -> None:
    ls = _listener(PORT, 128, keepalive=keepalive)
    clients, servers = [], []
    for _ in range(count):
        c = socket.socket()
        if keepalive:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        c.connect(("127.0.0.1", PORT))
        clients.append(c)
        servers.append(ls.accept()[0])
    ready()
    _forever()


@contextlib.contextmanager
def idle_connections(netns: str, *, count: int = 12, keepalive: bool = False) -> Iterator[None]:
    with Background(netns, idle_pairs, count, keepalive):
        yield


# --- short connections closed by the client: TIME_WAIT on the client's ephemeral ports -----------


def echo_server(ready: Callable[[], object]) -> None:
    ls = _listener(PORT, 512)
    ready()
    while True:
        conn, _ = ls.accept()
        conn.recv(16)
        conn.sendall(b"ok")
        with contextlib.suppress(OSError):
            conn.recv(16)  # wait for the client's FIN so that the client closes first
        conn.close()


def short_clients(ready: Callable[[], object], count: int, delay: float) -> None:
    ready()
    time.sleep(delay)
    for _ in range(count):
        with contextlib.suppress(OSError):
            s = socket.create_connection(("127.0.0.1", PORT))
            s.sendall(b"hi")
            s.recv(16)
            s.close()
    _forever()


@contextlib.contextmanager
def short_connections(netns: str, *, count: int, delay: float = 0.2) -> Iterator[None]:
    with Background(netns, echo_server), Background(netns, short_clients, count, delay):
        yield


# --- bulk: a sender into a receiver with a small receive buffer ----------------------------------


def bulk_receiver(ready: Callable[[], object], host: str, rcvbuf: int) -> None:
    ls = _listener(PORT, 16, rcvbuf=rcvbuf, host=host)
    ready()
    conn, _ = ls.accept()
    while conn.recv(1 << 16):
        pass
    _forever()


def bulk_sender(ready: Callable[[], object], host: str) -> None:
    s = socket.create_connection((host, PORT))
    ready()
    block = b"x" * (1 << 16)
    while True:
        s.sendall(block)
