"""Helpers for sandbox tests: what a sandbox may leave on the host, and sandbox-holding child processes.

A module with a unique name (not conftest) so test modules can import it unambiguously.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tuner.netns import NETNS_DIR, NetnsChild
from tuner.sandbox.delayline import LineParams, LineStats, run_line
from tuner.sandbox.registry import REGISTRY_DIR, process_start

REPO = Path(__file__).resolve().parents[2]

# A child python process that holds a sandbox until it is killed; prints what it created as JSON.
HOLDER = r"""
import json, sys, time
from tuner.logs import configure
configure("warning")
from tuner.sandbox import Sandbox, Side
from tuner.workload import NetworkPath as Path
path = Path(rtt=0.01, rate_bps=50e6) if sys.argv[1] == "tun" else None
with Sandbox(path) as sb:
    job = sb.spawn(Side.SERVER, time.sleep, 600)
    print(json.dumps({"name": sb.name, "netns": [sb.netns(s) for s in Side], "helpers": sb.helper_pids()}),
          flush=True)
    time.sleep(600)
"""

# The next run of a tuner process that uses sandboxes.
NEXT_RUN = r"""
from tuner.logs import configure
configure("warning")
from tuner.sandbox import Sandbox
with Sandbox() as sb:
    pass
"""


def _owned(directory: Path, pid: int | None) -> list[str]:
    prefix = f"tuner-{pid or os.getpid()}-"
    try:
        return sorted(n for n in os.listdir(directory) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def own_namespaces(pid: int | None = None) -> list[str]:
    return _owned(NETNS_DIR, pid)


def own_records(pid: int | None = None) -> list[str]:
    return _owned(REGISTRY_DIR, pid)


def host_links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def children(pid: int | None = None) -> list[int]:
    """Live (or zombie) children of ``pid``."""
    pid = pid or os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    return process_start(pid) is not None


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Holder:
    def __init__(self, kind: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"holder did not start: {self.proc.stderr.read()}")
        info = json.loads(line)
        self.pid = self.proc.pid
        self.name: str = info["name"]
        self.netns: list[str] = info["netns"]
        self.helpers: list[int] = info["helpers"]

    def namespaces_exist(self) -> bool:
        return all((NETNS_DIR / ns).exists() for ns in self.netns)

    def record_exists(self) -> bool:
        return (REGISTRY_DIR / f"{self.name}.json").exists()

    def signal(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=10)


def run_next() -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", NEXT_RUN], capture_output=True, text=True, env=env, cwd=REPO, timeout=30
    )


# --- traffic across a sandbox (run in its namespaces) -------------------------------------------

SERVER = "198.18.0.2"
PORT = 5301
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # the socket module lacks it


def listener(rcvbuf: int | None = None) -> socket.socket:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:  # before listen: the window scale is fixed at the SYN; FORCE ignores rmem_max
        ls.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    ls.bind((SERVER, PORT))
    ls.listen(1)
    return ls


def connect() -> socket.socket:
    """Connect to the server side, retrying while its listener is not up yet."""
    deadline = time.monotonic() + 3
    while True:
        try:
            return socket.create_connection((SERVER, PORT), timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def echo() -> None:
    conn, _ = listener().accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(100):
        conn.sendall(data)


def ping_pong(count: int) -> list[float]:
    """Round-trip times of ``count`` 100-byte exchanges with :func:`echo`."""
    s = connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(count):
        t0 = time.monotonic()
        s.sendall(b"x" * 100)
        got = 0
        while got < 100:
            got += len(s.recv(100))
        out.append(time.monotonic() - t0)
    s.close()
    return out


class Line:
    """A forwarder process between ``inlet`` (we send) and ``outlet`` (a thread receives all along,
    so the forwarder never blocks on a full socket)."""

    def __init__(self, params: LineParams) -> None:
        self.inlet, line_in = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        line_out, self.outlet = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.stats = LineStats()
        self.child = NetnsChild(
            None, run_line, (line_in.fileno(), line_out.fileno(), params, self.stats), die_with_parent=True
        )
        line_in.close()
        line_out.close()
        self.arrivals: list[tuple[float, bytes]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.outlet.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._cond:
                self.arrivals.append((time.monotonic(), data))
                self._cond.notify_all()

    def send(self, payload: bytes) -> None:
        self.inlet.send(payload)

    def next_arrival(self, index: int, timeout: float = 2.0) -> tuple[float, bytes]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.arrivals) > index, timeout)
            return self.arrivals[index]

    def receive_all(self, quiet: float = 0.2) -> list[tuple[float, bytes]]:
        """Every arrival so far, once nothing has arrived for ``quiet`` seconds."""
        while True:
            with self._cond:
                n = len(self.arrivals)
                self._cond.wait(quiet)
                if len(self.arrivals) == n:
                    got, self.arrivals = self.arrivals, []
                    return got

    def settle(self) -> None:
        time.sleep(0.05)  # the forwarder publishes its counters when it goes idle

    def close(self) -> None:
        self.child.kill()
        self.stats.close()
        self.inlet.close()
        self.outlet.shutdown(socket.SHUT_RDWR)
        self.outlet.close()
