"""How faithful is the emulated path? RTT accuracy and goodput against the configured values.

    sudo python3 bench/sandbox_path.py [--backend tun|netem] [--seconds 3] [--json]

1. RTT: for a configured RTT of 2, 20, 50 and 200 ms (rate cap left to the default), a TCP ping-pong of
   100-byte messages (TCP_NODELAY) across the sandbox: median and p99 of the measured RTT against the
   configured one. Target: median within 5% (or 0.5 ms, whichever is larger).
2. Goodput: one bulk TCP stream client -> server across RTT 20 ms for caps of 10, 50, 100 and
   200 Mbit/s; IP bytes the link delivered per second (its own counters, second half of the run)
   against the cap, with the delay line's CPU time, TUN drops and p99 lateness.
   Targets: >= 95% of the cap, zero TUN drops.

The machine's load average is printed with the table: other work on a 2-core machine shows up here.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path as FsPath

sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from tuner.sandbox import Sandbox, Side  # noqa: E402
from tuner.workload import Path  # noqa: E402

PORT = 5201
SERVER = "198.18.0.2"


def echo_server(size: int) -> None:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((SERVER, PORT))
    ls.listen(1)
    conn, _ = ls.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(size)
        if not data:
            return
        conn.sendall(data)


def ping_pong(count: int, size: int) -> list[float]:
    s = _connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * size
    out = []
    for _ in range(count + 2):
        t0 = time.monotonic()
        s.sendall(msg)
        got = 0
        while got < size:
            got += len(s.recv(size))
        out.append(time.monotonic() - t0)
    s.close()
    return out[2:]  # the first exchanges include slow start and the connection's first ACKs


def sink_server() -> int:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((SERVER, PORT))
    ls.listen(1)
    conn, _ = ls.accept()
    buf = bytearray(1 << 18)
    total = 0
    while n := conn.recv_into(buf):
        total += n
    return total


def bulk_client(seconds: float) -> str:
    s = _connect()
    data = b"\0" * (1 << 16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(data)
    cc = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
    s.close()
    return cc


def _connect() -> socket.socket:
    deadline = time.monotonic() + 3
    while True:
        try:
            return socket.create_connection((SERVER, PORT), timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_rtt(rtt: float, backend: str | None) -> dict:
    count = int(max(20, min(200, 1.5 / rtt)))
    with Sandbox(Path(rtt=rtt), backend=backend) as sb:
        job = sb.spawn(Side.SERVER, echo_server, 100)
        sb.reset_health()
        rtts = sb.run(Side.CLIENT, ping_pong, count, 100)
        health = sb.health()
        job.result(5)
        backend_used = sb.backend
    med = statistics.median(rtts)
    return {"backend": backend_used, "rtt_ms": rtt * 1e3, "samples": len(rtts), "median_ms": med * 1e3,
            "p99_ms": _p(rtts, 0.99) * 1e3, "error_ms": (med - rtt) * 1e3,
            "error_pct": (med - rtt) / rtt * 100, "late_p99_ms": health.late_p99_ms, "valid": health.valid}


def bench_goodput(rate: float, seconds: float, backend: str | None) -> dict:
    with Sandbox(Path(rtt=0.02, rate_bps=rate), backend=backend) as sb:
        job = sb.spawn(Side.SERVER, sink_server)
        client = sb.spawn(Side.CLIENT, bulk_client, seconds)
        time.sleep(seconds / 2)
        sb.reset_health()
        cc = client.result(seconds + 10)
        health = sb.health()
        job.result(10)
        backend_used = sb.backend
    ip_rate = health.bytes_to_server * 8 / health.elapsed
    return {"backend": backend_used, "cap_mbit": rate / 1e6, "ip_mbit": ip_rate / 1e6,
            "of_cap_pct": ip_rate / rate * 100, "cpu_cores": health.cpu_seconds / health.elapsed,
            "tun_drops": health.tun_drops, "queue_drops": health.dropped_queue, "late_p99_ms": health.late_p99_ms,
            "congestion_control": cc, "valid": health.valid, "reason": health.reason}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["tun", "netem"], default=None)
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each bulk run (default 3)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 3
    load0 = os.getloadavg()
    rtt_rows = [bench_rtt(r, args.backend) for r in (0.002, 0.02, 0.05, 0.2)]
    rate_rows = [bench_goodput(r, args.seconds, args.backend) for r in (10e6, 50e6, 100e6, 200e6)]
    load1 = os.getloadavg()
    if args.json:
        print(json.dumps({"rtt": rtt_rows, "goodput": rate_rows, "load": [load0, load1]}, indent=2))
        return 0
    print(f"machine: {os.cpu_count()} cores, load average {load0[0]:.2f} before, {load1[0]:.2f} after")
    print(f"backend: {rtt_rows[0]['backend']}")
    print()
    print("RTT (TCP ping-pong, 100-byte messages)")
    print(f"{'configured':>10} {'samples':>7} {'median':>9} {'p99':>9} {'error':>9} {'error%':>7} "
          f"{'late p99':>9}  ok")
    for r in rtt_rows:
        ok = abs(r["error_ms"]) <= max(0.5, 0.05 * r["rtt_ms"])
        print(f"{r['rtt_ms']:>8.0f}ms {r['samples']:>7} {r['median_ms']:>7.2f}ms {r['p99_ms']:>7.2f}ms "
              f"{r['error_ms']:>+7.2f}ms {r['error_pct']:>+6.1f}% {r['late_p99_ms']:>7.2f}ms  {'yes' if ok else 'NO'}")
    print()
    print(f"Goodput (one TCP stream, RTT 20 ms, {rate_rows[0]['congestion_control']}; IP bytes, 2nd half of "
          f"{args.seconds:g} s)")
    print(f"{'cap':>9} {'delivered':>11} {'of cap':>7} {'line CPU':>9} {'TUN drops':>9} {'queue drops':>11} "
          f"{'late p99':>9}  ok")
    for r in rate_rows:
        ok = r["of_cap_pct"] >= 95 and r["tun_drops"] == 0
        print(f"{r['cap_mbit']:>5.0f}Mbit {r['ip_mbit']:>7.1f}Mbit {r['of_cap_pct']:>6.1f}% "
              f"{r['cpu_cores'] * 100:>7.0f}% {r['tun_drops']:>9} {r['queue_drops']:>11} "
              f"{r['late_p99_ms']:>7.2f}ms  {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
