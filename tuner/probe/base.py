"""What every workload probe shares: the per-repeat sample, the repeat environment, server handling.

A workload module (rr, bulk, burst, udp, keepalive, memory) implements ``run_repeat(env) -> Sample``:
it starts its server in the server namespace, drives its client in the client namespace, and turns
what both report into metric values of one repeat. The runner (:mod:`tuner.probe.runner`) does the
rest: the sandbox, repeats, counters, health, validity and failure handling.
"""

from __future__ import annotations

import math
import os
import selectors
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.errors import ProbeError
from tuner.netns import ChildTimeout
from tuner.probe.board import Board
from tuner.probe.sockopts import SocketOptions
from tuner.workload import NetworkPath, Workload

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_BACKLOG",
    "RepeatEnv",
    "Sample",
    "ServerCrashed",
    "ServerHung",
    "accept_many",
    "connect_many",
    "drive_against_server",
    "latency_metrics",
    "open_listener",
    "percentile",
    "start_server",
    "stop_server",
]

CONNECT_TIMEOUT = 10.0  # seconds a probe waits for a connection its workload needs (not burst's)
DEFAULT_BACKLOG = 128  # what an application that does not choose gets (Python's listen() default)


class ServerCrashed(ProbeError):
    """A workload's server (or another child of the probe) died or raised."""

    verb = "crashed"

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(f"{role} {self.verb}: {reason}")
        self.role = role
        self.reason = reason


class ServerHung(ServerCrashed):
    """A workload's server (or another child of the probe) did not finish in time; it was terminated."""

    verb = "hung"


@dataclass
class Sample:
    """One repeat's metric values, and what may make the repeat untrustworthy."""

    metrics: dict[str, float] = field(default_factory=dict)
    computed: dict[str, float] = field(default_factory=dict)  # figures derived from settings, not measured
    bottlenecks: dict[str, str] = field(default_factory=dict)  # key -> "load generator: ..." reason
    held: dict[str, str] = field(default_factory=dict)  # key -> reason: limits that only make it look worse
    notes: list[str] = field(default_factory=list)

    def bottleneck(self, key: str, reason: str) -> None:
        """Record that ``key`` (e.g. "no transactions") spoiled this repeat: the measurement is invalid.
        The first reason per key is kept."""
        self.bottlenecks.setdefault(key, reason)

    def held_back(self, key: str, reason: str) -> None:
        """Record that ``key`` (e.g. "client cpu") held this repeat back in a way that can only make the
        settings look worse than they are (a closed loop's busy client lengthens every transaction): the
        figures are a pessimistic bound, fair for a candidate, never for a baseline (see
        :attr:`tuner.probe.measurement.Measurement.held_back`)."""
        self.held.setdefault(key, reason)


@dataclass
class RepeatEnv:
    """Everything a workload's ``run_repeat`` may use. ``sandbox`` follows the Sandbox contract."""

    sandbox: Any
    workload: Workload
    path: NetworkPath
    options: SocketOptions
    duration: float  # measured seconds per repeat
    warmup: float  # seconds run before the measured window, in every repeat
    client_side: Any  # tuner.sandbox.Side.CLIENT
    server_side: Any  # tuner.sandbox.Side.SERVER

    @property
    def server_host(self) -> str:
        return self.sandbox.address(self.server_side)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_metrics(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """``{prefix}_p50_ms``, ``_p90_ms``, ``_p99_ms``, ``_max_ms`` of latencies in seconds."""
    xs = sorted(seconds)
    if not xs:
        return {}
    return {
        f"{prefix}_p50_ms": percentile(xs, 50) * 1e3,
        f"{prefix}_p90_ms": percentile(xs, 90) * 1e3,
        f"{prefix}_p99_ms": percentile(xs, 99) * 1e3,
        f"{prefix}_max_ms": xs[-1] * 1e3,
    }


def _reason(job: Any) -> str:
    try:
        job.result(timeout=5.0)
    except Exception as exc:  # noqa: BLE001 - whatever it died of is the reason we report
        return f"{type(exc).__name__}: {exc}"
    return "it exited early"


def start_server(
    env: RepeatEnv,
    board: Board,
    fn: Callable[..., Any],
    *args: Any,
    ready: str = "port",
    role: str = "server",
    side: Any = None,
    timeout: float = CONNECT_TIMEOUT,
) -> Any:
    """Spawn ``fn(*args)`` in the server namespace (or ``side``'s) and wait until it sets ``board[ready]``.

    Raises :class:`ServerCrashed` with the child's own error when it dies first.
    """
    job = env.sandbox.spawn(side if side is not None else env.server_side, fn, *args)
    try:
        board.wait(ready, timeout=timeout, alive=job.alive)
        if not board[ready]:
            raise ServerCrashed(role, _reason(job))
    except BaseException:
        job.terminate()  # a server that never got ready must not keep running in a sandbox the next trial reuses
        raise
    return job


def stop_server(job: Any, board: Board | None = None, *, role: str = "server", timeout: float = 10.0) -> Any:
    """Ask a workload process to stop (``board["stop"]``) and return its result.

    Raises :class:`ServerCrashed` when it raised or died instead.
    """
    if board is not None:
        board["stop"] = 1
    try:
        return job.result(timeout=timeout)
    except ChildTimeout as exc:
        job.terminate()
        raise ServerHung(role, f"no result within {timeout:g} s") from exc
    except Exception as exc:  # the child's failure, whatever it was, becomes the probe's reason
        raise ServerCrashed(role, f"{type(exc).__name__}: {exc}") from exc


def drive_against_server(
    env: RepeatEnv, serve: Callable[..., Any], drive: Callable[..., Any], *args: Any
) -> tuple[Any, Any]:
    """One repeat of a client/server probe: ``serve(workload, options, board, server_host)`` in the server
    namespace until it posts its port, then ``drive(workload, options, server_host, port, *args)`` in the
    client's; the server is stopped whatever happens. Returns (client report, server report)."""
    w, board = env.workload, Board("port", "stop")
    server = start_server(env, board, serve, w, env.options, board, env.server_host)
    try:
        client = env.sandbox.run(
            env.client_side, drive, w, env.options, env.server_host, int(board["port"]), *args
        )
    finally:
        server_report = stop_server(server, board)
    return client, server_report


def open_listener(
    host: str, options: SocketOptions, default_backlog: int = DEFAULT_BACKLOG
) -> tuple[socket.socket, int]:
    """A TCP listener on an ephemeral port of ``host``: the server options set before ``listen()``, the
    assignment's backlog or else ``default_backlog``. Returns the socket and the backlog asked for."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        options.listener(listener)
        listener.bind((host, 0))
        return listener, options.listen(listener, default_backlog)
    except BaseException:
        listener.close()
        raise


def connect_many(
    n: int,
    host: str,
    port: int,
    options: SocketOptions,
    *,
    dead_peer: bool = True,
    wave: int = 64,
    timeout: float = CONNECT_TIMEOUT,
) -> list[socket.socket]:
    """Open ``n`` TCP connections, ``wave`` at a time (non-blocking connects), with the client options.

    Waves keep the arrivals below a default accept backlog; every socket is blocking on return.
    Raises ``OSError`` naming the first failure; nothing stays open then.
    """
    done: list[socket.socket] = []
    batch: list[socket.socket] = []
    try:
        while len(done) < n:
            batch = []
            with selectors.DefaultSelector() as sel:
                for _ in range(min(wave, n - len(done))):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    batch.append(sock)
                    options.client(sock, dead_peer=dead_peer)
                    sock.setblocking(False)
                    sock.connect_ex((host, port))
                    sel.register(sock, selectors.EVENT_WRITE)
                deadline = time.monotonic() + timeout
                pending = len(batch)
                while pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"connect to {host}:{port} timed out after {timeout:g} s")
                    for key, _ in sel.select(left):
                        sock = key.fileobj  # type: ignore[assignment]
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, f"connect to {host}:{port}: {os.strerror(err)}")
                        sel.unregister(sock)
                        pending -= 1
            for sock in batch:
                sock.setblocking(True)
            done.extend(batch)
            batch = []
    except BaseException:
        for sock in done + batch:
            sock.close()
        raise
    return done


def accept_many(
    listener: socket.socket,
    n: int,
    options: SocketOptions,
    *,
    dead_peer: bool = True,
    timeout: float = CONNECT_TIMEOUT,
) -> list[socket.socket]:
    """Accept ``n`` connections (blocking sockets, server options applied) within ``timeout`` s."""
    conns: list[socket.socket] = []
    listener.settimeout(timeout)
    try:
        for _ in range(n):
            conn, _ = listener.accept()
            conn.setblocking(True)
            options.accepted(conn, dead_peer=dead_peer)
            conns.append(conn)
    except BaseException:
        for conn in conns:
            conn.close()
        raise
    return conns
