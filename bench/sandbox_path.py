"""How faithful is the emulated path? RTT accuracy, goodput at the rates users have, loss vs Mathis.

    sudo .venv/bin/python bench/sandbox_path.py [--backend tun|netem] [--burn 2] [--quick] [--json]

1. RTT: TCP ping-pong of 100-byte messages (TCP_NODELAY) across an idle path with RTT 1, 50 and 200 ms
   at caps of 1 and 3 Gbit/s: the kernel's min_rtt of the client socket (tcp_info) against the
   configured RTT. Target: within 5%. The endpoints' own median and the smoothed RTT are shown too: on a
   busy machine they also hold the Python endpoints' wake-ups, which no emulated path can remove (the
   min_rtt still holds the echo server's fastest turnaround: the ACK rides on its reply).
2. Goodput at 1 Gbit/s: one TCP stream (cubic, 64 MiB tcp_rmem/tcp_wmem maxima in both namespaces)
   across RTT 1, 50 and 200 ms; the second half of the run: IP bytes the link delivered per second and
   the receiver's payload bytes per second against the cap, the delay line's CPU (busiest forwarder,
   share of one core), TUN drops, p99 lateness, and what the run's own health verdict said.
   Targets: IP rate >= 95% of the cap, busiest forwarder <= 1 core, zero TUN drops.
3. Ceiling: the same stream at RTT 20 ms for rising caps (1, 2, 3, 4, 6 Gbit/s) until the delivered
   IP rate falls under 95% of the cap; the highest cap held is reported.
4. Loss: cubic across RTT 20 ms, 100 Mbit/s with 0.1% and 1% random loss; receiver goodput against the
   Mathis et al. estimate MSS/RTT * 1.22/sqrt(p) (MSS 1448 with timestamps; RTT the configured one).
   Target: within +-25%.

``--queue N`` sets every bulk path's bottleneck queue; ``TUNER_TUN_OFFLOAD=0`` runs the delay line one
packet per read (the line without super-packets, for comparison). ``--burn N`` runs N CPU-burning processes beside the whole bench (a production host is never idle);
they are stopped by PID at the end. Every row runs ``--repeats`` times (default 3) and reports the
median with the min..max spread. The machine's load average is printed with the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path as FsPath

sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from tuner.kernel.structs import tcp_info
from tuner.logs import configure
from tuner.sandbox import Sandbox, Side
from tuner.workload import NetworkPath

PORT = 5201
SERVER = "198.18.0.2"
MSS = 1448
BIG = 64 << 20
BIG_BUFFERS = {"net.ipv4.tcp_rmem": (4096, 131072, BIG), "net.ipv4.tcp_wmem": (4096, 16384, BIG)}


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


def ping_pong(count: int, size: int) -> tuple[list[float], float, float]:
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
    info = tcp_info(s)
    s.close()
    # the kernel's view: the windowed minimum (the path's delay plus the echo server's fastest turnaround,
    # as the ACK rides on the reply) and the smoothed RTT (also the delay line's lateness and the server's
    # slower wake-ups); the endpoints' own wake-ups on the client side are not in either
    return out[2:], info.min_rtt_us / 1e6, info.rtt_us / 1e6  # the first exchanges include slow start


def sink_server() -> list[tuple[float, int]]:
    """(time, payload bytes so far) every ~50 ms until the sender closes."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((SERVER, PORT))
    ls.listen(1)
    conn, _ = ls.accept()
    buf = bytearray(1 << 20)
    total = 0
    marks = [(time.monotonic(), 0)]
    while n := conn.recv_into(buf):
        total += n
        now = time.monotonic()
        if now - marks[-1][0] >= 0.05:
            marks.append((now, total))
    marks.append((time.monotonic(), total))
    return marks


def bulk_client(seconds: float, cc: str) -> str:
    s = _connect()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    data = b"\0" * (1 << 18)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(data)
    used = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
    s.close()
    return used


def _connect() -> socket.socket:
    deadline = time.monotonic() + 3
    while True:
        try:
            return socket.create_connection((SERVER, PORT), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _rate_between(marks: list[tuple[float, int]], t0: float, t1: float) -> float:
    """Payload bits per second between t0 and t1 (from the sink's marks)."""
    inside = [m for m in marks if t0 <= m[0] <= t1]
    if len(inside) < 2:
        return 0.0
    (a, x), (b, y) = inside[0], inside[-1]
    return (y - x) * 8 / (b - a) if b > a else 0.0


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _med(rows: list[dict], key: str) -> tuple[float, float, float]:
    v = [r[key] for r in rows]
    return statistics.median(v), min(v), max(v)


def bench_rtt(rtt: float, rate: float, backend: str | None) -> dict:
    count = int(max(20, min(200, 1.5 / rtt)))
    with Sandbox(NetworkPath(rtt=rtt, rate_bps=rate), backend=backend) as sb:
        job = sb.spawn(Side.SERVER, echo_server, 100)
        sb.reset_health()
        rtts, min_rtt, srtt = sb.run(Side.CLIENT, ping_pong, count, 100)
        health = sb.health()
        job.result(5)
        backend_used = sb.backend
    med = statistics.median(rtts)
    return {
        "backend": backend_used,
        "rtt_ms": rtt * 1e3,
        "cap_mbit": rate / 1e6,
        "samples": len(rtts),
        "median_ms": med * 1e3,
        "p99_ms": _p(rtts, 0.99) * 1e3,
        "error_ms": (med - rtt) * 1e3,
        "error_pct": (med - rtt) / rtt * 100,
        "kernel_min_rtt_ms": min_rtt * 1e3,
        "kernel_error_pct": (min_rtt - rtt) / rtt * 100,
        "kernel_srtt_ms": srtt * 1e3,
        "kernel_srtt_error_pct": (srtt - rtt) / rtt * 100,
        "late_p99_ms": health.late_p99_ms,
        "valid": health.valid,
    }


QUEUE: int | None = None  # --queue: the path's bottleneck queue in packets (default: tuner's own)


def bench_bulk(
    rate: float, rtt: float, seconds: float, backend: str | None, loss: float = 0.0, cc: str = "cubic"
) -> dict:
    path = NetworkPath(rtt=rtt, rate_bps=rate, loss=loss, queue_packets=QUEUE)
    with Sandbox(path, backend=backend, client_sysctls=BIG_BUFFERS, server_sysctls=BIG_BUFFERS) as sb:
        sink = sb.spawn(Side.SERVER, sink_server)
        t_start = time.monotonic()
        client = sb.spawn(Side.CLIENT, bulk_client, seconds, cc)
        time.sleep(seconds / 2)
        t_half = time.monotonic()
        sb.reset_health()
        used = client.result(seconds + 30)
        health = sb.health()
        t_end = time.monotonic()
        marks = sink.result(30)
        backend_used = sb.backend
    goodput = _rate_between(marks, t_half, t_end)
    ip_rate = health.bytes_to_server * 8 / health.elapsed
    return {
        "backend": backend_used,
        "cap_mbit": rate / 1e6,
        "rtt_ms": rtt * 1e3,
        "loss_pct": loss * 100,
        "ip_mbit": ip_rate / 1e6,
        "goodput_mbit": goodput / 1e6,
        "of_cap_pct": ip_rate / rate * 100,
        "line_cpu_max": health.line_cpu_share,
        "line_cpu_total": health.cpu_seconds / health.elapsed,
        "frames_per_s": health.frames / health.elapsed,
        "packets_per_s": health.packets / health.elapsed,
        "tun_drops": health.tun_drops,
        "queue_drops": health.dropped_queue,
        "loss_drops": health.dropped_loss,
        "late_p99_ms": health.late_p99_ms,
        "offload": health.offload,
        "congestion_control": used,
        "valid": health.valid,
        "reason": health.reason,
        "seconds": round(t_end - t_start, 1),
    }


def mathis_bps(rtt: float, loss: float) -> float:
    return MSS * 8 / rtt * 1.22 / math.sqrt(loss)


def _repeat(n: int, fn, *args, **kw) -> list[dict]:
    return [fn(*args, **kw) for _ in range(n)]


def _burn() -> None:
    x = 0
    while True:
        x += 1


def _fmt(t: tuple[float, float, float], width: int = 7, prec: int = 1) -> str:
    return f"{t[0]:>{width}.{prec}f} ({t[1]:.{prec}f}..{t[2]:.{prec}f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["tun", "netem"], default=None)
    ap.add_argument("--burn", type=int, default=0, help="CPU-burning processes beside the bench")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="shorter runs (goodput rows 6 s, loss rows 15 s)")
    ap.add_argument("--only", choices=["rtt", "goodput", "ceiling", "loss"], action="append")
    ap.add_argument(
        "--queue",
        type=int,
        default=None,
        metavar="PACKETS",
        help="bottleneck queue of every bulk path (default: tuner's, one BDP + 2 ms, at least 100 packets)",
    )
    ap.add_argument(
        "--goodput-rtts",
        type=float,
        nargs="+",
        default=[1.0, 50.0, 200.0],
        metavar="MS",
        help="RTTs of the 1 Gbit/s goodput rows (default: 1 50 200)",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--render", metavar="FILE", help="print the tables of a saved --json run and exit")
    args = ap.parse_args()
    if args.render:
        _print(json.loads(FsPath(args.render).read_text()))
        return 0
    configure("warning")  # events to stderr, and only what matters: stdout holds the tables (or JSON)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 3
    global QUEUE
    QUEUE = args.queue
    parts = set(args.only or ["rtt", "goodput", "ceiling", "loss"])
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burn)]
    for b in burners:
        b.start()
    try:
        load0 = os.getloadavg()
        out: dict = {"burners": args.burn, "repeats": args.repeats}
        if "rtt" in parts:
            out["rtt"] = [
                bench_rtt(rtt, rate, args.backend) for rate in (1e9, 3e9) for rtt in (0.001, 0.05, 0.2)
            ]
        if "goodput" in parts:
            out["goodput"] = []
            for rtt in [r / 1e3 for r in args.goodput_rtts]:
                secs = (6 if args.quick else 10) + (6 if rtt >= 0.2 else 0)
                rows = _repeat(args.repeats, bench_bulk, 1e9, rtt, secs, args.backend)
                out["goodput"].append({"rtt_ms": rtt * 1e3, "cap_mbit": 1000, "runs": rows})
        if "ceiling" in parts:
            out["ceiling"] = []
            for rate in (1e9, 2e9, 3e9, 4e9, 6e9):
                rows = _repeat(args.repeats, bench_bulk, rate, 0.02, 6 if args.quick else 8, args.backend)
                out["ceiling"].append({"rtt_ms": 20, "cap_mbit": rate / 1e6, "runs": rows})
                if statistics.median(r["of_cap_pct"] for r in rows) < 95:
                    break
        if "loss" in parts:
            out["loss"] = []
            for loss in (0.001, 0.01):
                secs = 15 if args.quick else 30
                rows = _repeat(args.repeats, bench_bulk, 100e6, 0.02, secs, args.backend, loss=loss)
                out["loss"].append(
                    {
                        "rtt_ms": 20,
                        "cap_mbit": 100,
                        "loss_pct": loss * 100,
                        "mathis_mbit": mathis_bps(0.02, loss) / 1e6,
                        "runs": rows,
                    }
                )
        out["load"] = [load0, os.getloadavg()]
    finally:
        for b in burners:
            if b.pid is not None:
                os.kill(b.pid, signal.SIGKILL)
            b.join()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    _print(out)
    return 0


def _print(out: dict) -> None:
    load0, load1 = out["load"]
    print(
        f"machine: {os.cpu_count()} cores, {out['burners']} CPU burners beside the bench, load average "
        f"{load0[0]:.2f} before, {load1[0]:.2f} after; medians of {out['repeats']} runs (min..max)"
    )
    if "rtt" in out:
        print("\nRTT (idle path, TCP ping-pong, 100-byte messages)")
        print("  app: what the Python endpoints saw (includes their own wake-up delays on a busy machine);")
        print("  kernel: tcp_info of the client socket (the path as TCP sees it): min_rtt (the path's delay)")
        print("  and the smoothed RTT (also the line's lateness and the server's wake-ups);")
        print("  ok: kernel min_rtt within 5% of the configured RTT (the line's own tail: late p99)")
        print(
            f"{'cap':>9} {'configured':>10} {'app median':>10} {'app p99':>9} {'app err%':>8} "
            f"{'kernel min':>10} {'kern err%':>9} {'srtt':>8} {'srtt err%':>9} {'late p99':>9}  ok"
        )
        for r in out["rtt"]:
            kmin = r.get("kernel_min_rtt_ms", float("nan"))
            kerr = r.get("kernel_error_pct", float("nan"))
            srtt = r.get("kernel_srtt_ms", float("nan"))
            serr = r.get("kernel_srtt_error_pct", float("nan"))
            # runs saved before the kernel's view was recorded: the endpoints' error (within 5% or 0.5 ms)
            ok = (
                abs(kerr) <= 5.0
                if math.isfinite(kerr)
                else abs(r["error_ms"]) <= max(0.5, 0.05 * r["rtt_ms"])
            )
            print(
                f"{r['cap_mbit']:>5.0f}Mbit {r['rtt_ms']:>8.0f}ms {r['median_ms']:>8.2f}ms {r['p99_ms']:>7.2f}ms "
                f"{r['error_pct']:>+7.1f}% {kmin:>8.3f}ms {kerr:>+8.1f}% {srtt:>6.3f}ms {serr:>+8.1f}% "
                f"{r['late_p99_ms']:>7.2f}ms  {'yes' if ok else 'NO'}"
            )
    for key, title in (
        ("goodput", "Goodput at 1 Gbit/s (one cubic stream, 64 MiB buffer maxima, 2nd half)"),
        ("ceiling", "Ceiling (one cubic stream, RTT 20 ms, rising caps)"),
    ):
        if key not in out:
            continue
        print(f"\n{title}")
        print(
            f"{'cap':>9} {'rtt':>6} {'IP rate Mbit/s':>24} {'of cap %':>22} {'payload Mbit/s':>24} "
            f"{'line CPU (busiest)':>22} {'frames/s':>9} {'late p99':>8} {'TUN drops':>9} {'valid':>6}  ok"
        )
        for g in out[key]:
            rows = g["runs"]
            of_cap = _med(rows, "of_cap_pct")
            cpu = _med(rows, "line_cpu_max")
            # held: the median run at >= 95% of the cap, the line under a core, no TUN drop, and most
            # runs valid by the path's own health (a run that carried the rate with late packets is not)
            ok = (
                of_cap[0] >= 95
                and cpu[2] <= 1.0
                and all(r["tun_drops"] == 0 for r in rows)
                and 2 * sum(r["valid"] for r in rows) > len(rows)
            )
            print(
                f"{g['cap_mbit']:>5.0f}Mbit {g['rtt_ms']:>4.0f}ms {_fmt(_med(rows, 'ip_mbit'), 8)} "
                f"{_fmt(of_cap, 6)} {_fmt(_med(rows, 'goodput_mbit'), 8)} {_fmt(cpu, 5, 2)} "
                f"{_med(rows, 'frames_per_s')[0]:>9.0f} {_med(rows, 'late_p99_ms')[0]:>6.2f}ms "
                f"{sum(r['tun_drops'] for r in rows):>9} {sum(r['valid'] for r in rows):>3}/{len(rows)}  "
                f"{'yes' if ok else 'NO'}"
            )
        if key == "ceiling":
            held = [
                g["cap_mbit"]
                for g in out[key]
                if statistics.median(r["of_cap_pct"] for r in g["runs"]) >= 95
                and 2 * sum(r["valid"] for r in g["runs"]) > len(g["runs"])
            ]
            print(f"highest cap held at >= 95% (most runs valid): {max(held) if held else 0:.0f} Mbit/s")
    if "loss" in out:
        print("\nLoss vs Mathis (cubic, RTT 20 ms, 100 Mbit/s cap; receiver payload, 2nd half)")
        print(f"{'loss':>6} {'Mathis':>9} {'goodput Mbit/s':>24} {'ratio':>20} {'dropped %':>10}  ok")
        for g in out["loss"]:
            rows = g["runs"]
            for r in rows:
                r["ratio"] = r["goodput_mbit"] / g["mathis_mbit"]
                r["dropped_pct"] = 100 * r["loss_drops"] / max(1, r["packets_per_s"] * (r["seconds"] / 2))
            ratio = _med(rows, "ratio")
            ok = 0.75 <= ratio[0] <= 1.25
            print(
                f"{g['loss_pct']:>5.1f}% {g['mathis_mbit']:>5.1f}Mbit {_fmt(_med(rows, 'goodput_mbit'), 8, 2)} "
                f"{_fmt(ratio, 5, 2)} {_med(rows, 'dropped_pct')[0]:>9.2f}%  {'yes' if ok else 'NO'}"
            )


if __name__ == "__main__":
    sys.exit(main())
