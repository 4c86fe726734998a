"""What does observing cost? A snapshot of 10,000 established TCP sockets, and the daemon's loop.

    sudo .venv/bin/python bench/observe.py [--connections 5000] [--repeats 7] [--interval 10] [--steps 3] [--json]

Everything runs inside a network namespace this benchmark creates (``tuner-<pid>-bench``), in one
child process that holds both ends of ``--connections`` loopback connections (5,000 connections =
10,000 established sockets) after raising its RLIMIT_NOFILE. The namespace and every socket go away
at the end, whatever happens.

1. Snapshot: ``tuner.observe.snapshot.collect`` (sock_diag dump of TCP+UDP, IPv4+IPv6, with tcp_info,
   socket memory and congestion control; decoded into dataclasses; plus /proc/net counters and
   sysctls), median of ``--repeats``. Target: < 50 ms. Compared in the same run, same namespace, with
   ``psutil.net_connections('tcp')`` and ``ss -tin`` (output to /dev/null), medians of the same count,
   and once with pyroute2's own generic decoder on the same dump. Process attribution (a /proc scan,
   cold and then cached) is timed separately.
2. Observation loop: ``tuner.observe.Observer.step()`` every ``--interval`` seconds for ``--steps``
   intervals; CPU time of the process (user + system) between the first and the last step over the
   wall time between them = share of one core. Target: < 0.5% at a 10 s interval.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path as FsPath

sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from tuner.adapters.procs import SocketOwners, psutil_connection_count
from tuner.adapters.sockdiag import SockDiag, decode_dump_with_pyroute2
from tuner.kernel import Proto, TcpState
from tuner.netns import run_in_netns
from tuner.observe import Observer
from tuner.observe.snapshot import attribute, collect

PORT = 5000


def _connect_all(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """Every socket held (listener, both ends), and the connecting ends."""
    need = 2 * n + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    ls = socket.socket()
    ls.bind(("127.0.0.1", PORT))
    ls.listen(4096)
    held: list[socket.socket] = [ls]
    clients: list[socket.socket] = []
    pending = 0
    for i in range(n):
        clients.append(socket.create_connection(("127.0.0.1", PORT)))
        held.append(clients[-1])
        pending += 1
        if pending == 1000 or i == n - 1:
            for _ in range(pending):
                held.append(ls.accept()[0])
            pending = 0
    return held, clients


def _timed(fn, repeats: int) -> tuple[float, list[float], object]:
    """Median wall time of ``fn()``. As in the daemon, the previous result stays alive while the next
    one is made and older ones are freed outside the timed region (freeing is not charged to the next
    call; the loop measurement below does include it)."""
    samples, last, older = [], None, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
        older, last = last, result
        del older
    return statistics.median(samples), samples, last


def _ss() -> None:
    subprocess.run(["ss", "-tin"], stdout=subprocess.DEVNULL, check=True)


def _keep_busy(clients: list[socket.socket]) -> None:
    """In a child: one byte on every connection every second, so no socket is idle between steps."""
    while True:
        for c in clients:
            c.send(b"b")
        time.sleep(1.0)


def bench(connections: int, repeats: int, interval: float, steps: int, busy: bool) -> dict:
    setup = time.perf_counter()
    held, clients = _connect_all(connections)
    setup = time.perf_counter() - setup
    out: dict = {"connections": connections, "setup_seconds": round(setup, 2)}
    with SockDiag() as diag:
        collect(diag)  # warm-up: layouts, imports
        med, samples, snap = _timed(lambda: collect(diag), repeats)
        out["established"] = sum(1 for s in snap.sockets if s.state is TcpState.ESTABLISHED)
        out["sockets"] = len(snap.sockets)
        out["snapshot_ms"] = {"median": med * 1e3, "samples": [round(s * 1e3, 2) for s in samples]}
        out["snapshot_dump_ms"] = {"median": statistics.median([collect(diag).took for _ in range(3)]) * 1e3}
        raw = [diag.dump_raw(4, Proto.TCP)]
    start = time.perf_counter()
    ref = decode_dump_with_pyroute2(raw[0])
    out["pyroute2_decode_ms"] = {
        "median": (time.perf_counter() - start) * 1e3,
        "runs": 1,
        "messages": len(ref),
    }
    med, samples, count = _timed(lambda: psutil_connection_count("tcp"), repeats)
    out["psutil_net_connections_ms"] = {
        "median": med * 1e3,
        "samples": [round(s * 1e3, 2) for s in samples],
        "connections": count,
    }
    med, samples, _ = _timed(_ss, repeats)
    out["ss_tin_ms"] = {"median": med * 1e3, "samples": [round(s * 1e3, 2) for s in samples]}
    owners = SocketOwners()
    start = time.perf_counter()
    attribute(snap, owners, [s.inode for s in snap.sockets])
    out["attribution_all_cold_ms"] = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    attribute(snap, owners, [s.inode for s in snap.sockets])
    out["attribution_all_cached_ms"] = (time.perf_counter() - start) * 1e3

    # the daemon's loop: one Observer.step() per interval
    traffic = 0
    if busy:
        traffic = os.fork()
        if traffic == 0:
            try:
                _keep_busy(clients)
            finally:
                os._exit(0)
    try:
        _loop(out, interval, steps)
    finally:
        if traffic:
            os.kill(traffic, signal.SIGKILL)
            os.waitpid(traffic, 0)
    for s in held:
        s.close()
    return out


def _loop(out: dict, interval: float, steps: int) -> None:
    with Observer() as observer:
        cpu, wall, step_cpu = [], [], []
        for i in range(steps + 1):
            if i:
                time.sleep(max(0.0, wall[0] + i * interval - time.monotonic()))
            c0 = time.process_time()
            obs = observer.step()
            c1 = time.process_time()
            cpu.append(c1)
            wall.append(time.monotonic())
            step_cpu.append(c1 - c0)
        out["loop"] = {
            "interval_s": interval,
            "steps": steps,
            "cpu_percent_of_one_core": 100 * (cpu[-1] - cpu[0]) / (wall[-1] - wall[0]),
            "step_cpu_ms": [round(s * 1e3, 1) for s in step_cpu],
            "services": len(obs.services) if obs else 0,
            "owner_scans": observer.owners.scans,
            "active_services": sum(1 for s in obs.services if s.shape.bytes_out or s.shape.bytes_in)
            if obs
            else 0,
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=5000, help="loopback connections (2 sockets each)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between observation steps")
    ap.add_argument("--steps", type=int, default=3, help="observation intervals to measure")
    ap.add_argument(
        "--busy",
        action="store_true",
        help="during the loop, a child sends a byte on every connection each second "
        "(no socket is idle: the worst case for the loop)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/observe.py needs root (it creates a network namespace)", file=sys.stderr)
        return 3
    ns = f"tuner-{os.getpid()}-bench"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        result = run_in_netns(ns, bench, args.connections, args.repeats, args.interval, args.steps, args.busy)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    snap = result["snapshot_ms"]["median"]
    loop = result["loop"]
    print(
        f"namespace {ns}: {result['connections']} connections = {result['established']} established sockets "
        f"({result['sockets']} in all), set up in {result['setup_seconds']} s; "
        f"load {result['load_average']} on {result['cpus']} CPUs"
    )
    rows = [
        ("tuner snapshot (collect)", snap, 1.0),
        ("  of which the sock_diag dump + decode", result["snapshot_dump_ms"]["median"], None),
        ("psutil.net_connections('tcp')", result["psutil_net_connections_ms"]["median"], None),
        ("ss -tin > /dev/null", result["ss_tin_ms"]["median"], None),
        ("pyroute2 generic decode of the IPv4 dump (1 run)", result["pyroute2_decode_ms"]["median"], None),
        ("attribution of every inode, cold /proc scan", result["attribution_all_cold_ms"], None),
        ("attribution of every inode, cached", result["attribution_all_cached_ms"], None),
    ]
    print(f"{'operation':52} {'median ms':>10} {'x snapshot':>11}")
    for name, ms, _ in rows:
        print(f"{name:52} {ms:10.1f} {ms / snap:11.2f}")
    verdict = "PASS" if snap < 50 else "FAIL"
    print(f"snapshot target < 50 ms: {verdict} ({snap:.1f} ms; samples {result['snapshot_ms']['samples']})")
    pct = loop["cpu_percent_of_one_core"]
    what = "every connection busy" if args.busy else "connections idle"
    print(
        f"observation loop ({what}) every {loop['interval_s']:g} s over {loop['steps']} intervals: "
        f"{pct:.3f}% of one core "
        f"(step CPU ms {loop['step_cpu_ms']}); target < 0.5%: {'PASS' if pct < 0.5 else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
