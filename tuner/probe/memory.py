"""memory: N mostly idle connections, each with a response its reader has not read yet.

The client opens ``idle_connections`` connections (64 at a time) and never reads; the server writes a
``response_size``-byte message on each (a notification a slow consumer has not picked up) as far as
the buffers let it, and stops when no connection makes progress any more. Then both sides read the
kernel's memory accounting of each of their sockets with ``getsockopt(SO_MEMINFO)`` (receive queue,
send queue, forward allocation, backlog: what the socket holds against ``tcp_mem``). ``/proc/net/sockstat``
is not used: its ``mem`` figure is global to the host, not per namespace. The socket structures
themselves (about 2-3 KiB of slab per socket, the same whatever the settings) are not included.

Metrics per repeat: ``bytes_per_conn`` (both ends together; ``queued_bytes_per_conn`` is the part in
the queues, the truesize of the pending data the buffers let in), and ``goodput_mbps`` of a brief bulk
download (at most half a second) over a fresh connection with the same settings: the throughput floor
a memory-saving setting must still meet (where the endpoints' CPU limited it, a note says the figure
is a lower bound; the memory figure stays valid).

Capacity on the development machine (``python3 bench/probes.py``): 500 connections open at 17-30k
connections/s on a plain veth pair (64 at a time); on a path with delay, a wave of 64 per round trip.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from dataclasses import dataclass, replace

from tuner.kernel import sock_meminfo
from tuner.probe import bulk
from tuner.probe.base import (
    DEFAULT_BACKLOG,
    RepeatEnv,
    Sample,
    accept_many,
    connect_many,
    open_listener,
    start_server,
    stop_server,
)
from tuner.probe.board import Board
from tuner.probe.sockopts import SocketOptions
from tuner.workload import Direction, Workload, WorkloadKind

__all__ = ["FLOOR_SECONDS", "SideMemory", "hold", "run_repeat", "serve"]

FLOOR_SECONDS = 0.5  # longest measured window of the throughput-floor check
_RESET = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class SideMemory:
    sockets: int
    charged: int  # bytes, summed over this side's sockets
    queued: int  # bytes of the messages still in this side's queues (receive + send)


def _measure(conns: list[socket.socket]) -> SideMemory:
    mems = [sock_meminfo(c) for c in conns]
    return SideMemory(
        len(conns), sum(m.charged for m in mems), sum(m.rmem_alloc + m.wmem_queued for m in mems)
    )


def serve(workload: Workload, options: SocketOptions, board: Board, host: str, settle: float) -> SideMemory:
    # like an application expecting this many clients: a backlog that holds a wave of connects
    listener, _ = open_listener(host, options, max(DEFAULT_BACKLOG, workload.idle_connections))
    board["port"] = listener.getsockname()[1]
    conns = accept_many(listener, max(workload.idle_connections, 1), options)
    listener.close()
    try:
        left = {c: max(workload.response_size, 0) for c in conns}
        _push(left, settle)
        mem = _measure(conns)  # before the client may reset the connections
        board["filled"] = time.monotonic()
        board.wait("measured", timeout=60.0, alive=lambda: not board["stop"])
        return mem
    finally:
        for c in conns:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            c.close()


def _push(left: dict[socket.socket, int], settle: float) -> None:
    """Write each connection's message as far as the buffers allow; return once no write has made
    progress for ``settle`` seconds (or everything is written)."""
    chunk = memoryview(bytearray(256 * 1024))
    for c in left:
        c.setblocking(False)
    last_progress = time.monotonic()
    with selectors.DefaultSelector() as sel:
        for c, n in left.items():
            if n:
                sel.register(c, selectors.EVENT_WRITE)
        while sel.get_map() and time.monotonic() - last_progress < settle:
            for key, _ in sel.select(settle / 4):
                c = key.fileobj  # type: ignore[assignment]
                try:
                    sent = c.send(chunk[: min(left[c], len(chunk))])
                except BlockingIOError:
                    continue
                if sent:
                    last_progress = time.monotonic()
                    left[c] -= sent
                if not left[c]:
                    sel.unregister(c)
    for c in left:
        c.setblocking(True)


def hold(workload: Workload, options: SocketOptions, board: Board, host: str, settle: float) -> SideMemory:
    """The client: open the connections, never read, measure once the server is done writing."""
    conns = connect_many(max(workload.idle_connections, 1), host, int(board["port"]), options)
    try:
        board.wait("filled", timeout=120.0, alive=lambda: not board["stop"])
        time.sleep(settle)  # what was in flight lands
        mem = _measure(conns)
        board["measured"] = time.monotonic()
        return mem
    finally:
        for c in conns:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            c.close()


def run_repeat(env: RepeatEnv) -> Sample:
    board = Board("port", "stop", "filled", "measured")
    w = env.workload
    settle = max(0.1, 4 * env.path.rtt)
    server = start_server(env, board, serve, w, env.options, board, env.server_host, settle)
    try:
        client: SideMemory = env.sandbox.run(
            env.client_side, hold, w, env.options, board, env.server_host, settle
        )
    finally:
        board["measured"] = board["measured"] or time.monotonic()
        server_mem: SideMemory = stop_server(server, None, timeout=30.0)
    sample = Sample()
    n = max(client.sockets, 1)
    sample.metrics["bytes_per_conn"] = (client.charged + server_mem.charged) / n
    floor_env = replace(
        env,
        workload=Workload(WorkloadKind.BULK, streams=1, direction=Direction.DOWNLOAD),
        duration=min(FLOOR_SECONDS, env.duration),
        warmup=min(env.warmup, 0.2),
    )
    floor = bulk.run_repeat(floor_env)
    sample.metrics["goodput_mbps"] = floor.metrics["goodput_mbps"]
    if floor.bottlenecks:  # a CPU-bound floor check still proves at least this goodput
        sample.notes.append("goodput_mbps is a lower bound: " + "; ".join(floor.bottlenecks.values()))
    sample.metrics["queued_bytes_per_conn"] = (client.queued + server_mem.queued) / n
    return sample
