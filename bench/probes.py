"""What can the probes generate on this machine, and how much do their results move from run to run?

    sudo .venv/bin/python bench/probes.py [--runs 5] [--repeats 3] [--duration 1] [--skip-spread] [--json]

1. Capacity (plain veth sandbox, no delay): the most each load generator offers when nothing else
   limits it: rr transactions/s (TCP_NODELAY, 1/4/16 connections), burst connects/s (backlog 4096, an
   acceptor without a rate limit), bulk Gbit/s (one stream), udp datagrams/s the sender offers and the
   reader serves (1200-byte datagrams), memory: connections opened per second. These are the figures
   quoted at the top of each tuner/probe/<kind>.py.
2. Spread: ``--runs`` separate ``run_probe`` calls (each ``--repeats`` x ``--duration``) of each
   default probe; for its main metric: the median over the runs, the run-to-run spread (half the range
   relative to the median) and the median within-run interval half-width. Baseline rows measure the
   kernel defaults; "tuned" rows the setting that matters for that kind.

The machine's load average is printed with the tables: other work on a 2-core machine shows up here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path as FsPath

sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from tuner.cli.output import print_table
from tuner.kinds import DEFAULT_WORKLOADS
from tuner.logs import configure
from tuner.probe import run_probe, udp
from tuner.probe.base import connect_many
from tuner.probe.board import Board
from tuner.probe.sockopts import SocketOptions
from tuner.sandbox import Sandbox, Side
from tuner.workload import NetworkPath, Workload, WorkloadKind

PLAIN = NetworkPath()
WAN = NetworkPath(rtt=0.05, rate_bps=100e6)
K = WorkloadKind


def _hold_listener(board: Board, host: str) -> None:
    import socket

    ls = socket.socket()
    ls.bind((host, 0))
    ls.listen(4096)
    board["port"] = ls.getsockname()[1]
    conns = []
    ls.settimeout(0.05)
    while not board["stop"]:
        try:
            conns.append(ls.accept()[0])
        except TimeoutError:
            continue


def _open_conns(n: int, host: str, port: int) -> float:
    t0 = time.monotonic()
    conns = connect_many(n, host, port, SocketOptions.from_assignment({}))
    elapsed = time.monotonic() - t0
    for c in conns:
        c.close()
    return n / elapsed


def udp_capacity(duration: float) -> tuple[float, float]:
    """(datagrams/s the sender offers, datagrams/s the reader serves) with no rate limit on either."""
    w = Workload(K.UDP, udp_rate=2e6, udp_burst=64, service_rate=1e9)
    opts = SocketOptions.from_assignment({"SO_RCVBUF": 32 << 20, "net.core.rmem_max": 64 << 20})
    with Sandbox() as sb:
        board = Board("port", "stop", "t_start", "t_end", "sent_all")
        job = sb.spawn(Side.SERVER, udp.serve, w, opts, board, sb.address(Side.SERVER), 1.0)
        board.wait("port", timeout=5.0)
        sender = sb.run(Side.CLIENT, udp.drive, w, opts, board, sb.address(Side.SERVER), 0.2, duration)
        reader = job.result(timeout=30.0)
    served = reader.processed / reader.busy_seconds if reader.busy_seconds else 0.0
    return sender.offered_rate, served


def conn_open_rate(n: int = 500) -> float:
    with Sandbox() as sb:
        board = Board("port", "stop")
        job = sb.spawn(Side.SERVER, _hold_listener, board, sb.address(Side.SERVER))
        board.wait("port", timeout=5.0)
        rate = sb.run(Side.CLIENT, _open_conns, n, sb.address(Side.SERVER), int(board["port"]))
        board["stop"] = 1
        job.result(timeout=10.0)
    return rate


def capacity(duration: float) -> list[dict]:
    rows = []
    nodelay = {"TCP_NODELAY": True}
    for n in (1, 4, 16):
        m = run_probe(Workload(K.RR, connections=n), PLAIN, nodelay, repeats=3, duration=duration)
        rows.append(
            {
                "probe": "rr",
                "what": f"transactions/s, {n} conn",
                "value": m.value("tps"),
                "spread": m.metrics["tps"].spread,
                "limit": m.invalid_reason or "-",
            }
        )
    m = run_probe(
        Workload(K.BURST, burst_connections=2000, burst_threads=256, accept_rate=1e6),
        PLAIN,
        {"backlog": 4096, "net.core.somaxconn": 4096},
        repeats=3,
        duration=duration,
    )
    rows.append(
        {
            "probe": "burst",
            "what": "connects/s (256 in flight)",
            "value": m.value("connect_rate"),
            "spread": m.metrics["connect_rate"].spread,
            "limit": m.invalid_reason or "-",
        }
    )
    m = run_probe(Workload(K.BULK), PLAIN, {}, repeats=3, duration=duration)
    rows.append(
        {
            "probe": "bulk",
            "what": "Mbit/s, 1 stream",
            "value": m.value("goodput_mbps"),
            "spread": m.metrics["goodput_mbps"].spread,
            "limit": m.invalid_reason or "-",
        }
    )
    offered, served = udp_capacity(duration)
    rows.append(
        {
            "probe": "udp",
            "what": "datagrams/s offered (1200 B)",
            "value": offered,
            "spread": None,
            "limit": "-",
        }
    )
    rows.append(
        {
            "probe": "udp",
            "what": "datagrams/s served by the reader",
            "value": served,
            "spread": None,
            "limit": "-",
        }
    )
    rows.append(
        {
            "probe": "memory",
            "what": "connections opened/s (500)",
            "value": conn_open_rate(),
            "spread": None,
            "limit": "-",
        }
    )
    return rows


# (label, workload, path, assignment, main metric)
SPREAD_CASES = [
    ("rr split, defaults", DEFAULT_WORKLOADS[K.RR], PLAIN, {}, "latency_p50_ms"),
    ("rr split, TCP_NODELAY", DEFAULT_WORKLOADS[K.RR], PLAIN, {"TCP_NODELAY": True}, "latency_p50_ms"),
    ("rr 16 conn, TCP_NODELAY", Workload(K.RR, connections=16), PLAIN, {"TCP_NODELAY": True}, "tps"),
    ("bulk 50ms/100mbit, defaults", DEFAULT_WORKLOADS[K.BULK], WAN, {}, "goodput_mbps"),
    (
        "bulk 50ms/100mbit, SO_RCVBUF 64K",
        DEFAULT_WORKLOADS[K.BULK],
        WAN,
        {"SO_RCVBUF": 65536},
        "goodput_mbps",
    ),
    ("burst, defaults (backlog 128)", DEFAULT_WORKLOADS[K.BURST], PLAIN, {}, "connect_p99_ms"),
    (
        "burst, backlog 4096",
        DEFAULT_WORKLOADS[K.BURST],
        PLAIN,
        {"backlog": 4096, "net.core.somaxconn": 4096},
        "connect_p99_ms",
    ),
    ("udp, defaults", DEFAULT_WORKLOADS[K.UDP], PLAIN, {}, "delivered_fraction"),
    (
        "udp, SO_RCVBUF 8M",
        DEFAULT_WORKLOADS[K.UDP],
        PLAIN,
        {"SO_RCVBUF": 8 << 20, "net.core.rmem_max": 16 << 20},
        "delivered_fraction",
    ),
    (
        "keepalive 1s/1s/3",
        DEFAULT_WORKLOADS[K.KEEPALIVE],
        PLAIN,
        {"SO_KEEPALIVE": True, "TCP_KEEPIDLE": 1, "TCP_KEEPINTVL": 1, "TCP_KEEPCNT": 3},
        "detect_s",
    ),
    ("memory 500 conn, defaults", DEFAULT_WORKLOADS[K.MEMORY], PLAIN, {}, "bytes_per_conn"),
]


def spread(runs: int, repeats: int, duration: float) -> list[dict]:
    rows = []
    for label, w, path, assignment, metric in SPREAD_CASES:
        t0 = time.monotonic()
        medians, inner, invalid, failed = [], [], 0, 0
        for _ in range(runs):
            m = run_probe(w, path, assignment, repeats=repeats, duration=duration)
            if m.failed:
                failed += 1
                continue
            invalid += not m.valid
            medians.append(m.value(metric))
            inner.append(m.metrics[metric].spread)
        if not medians:
            rows.append(
                {
                    "case": label,
                    "metric": metric,
                    "median": None,
                    "run_spread": None,
                    "within_run": None,
                    "invalid": invalid,
                    "failed": failed,
                    "seconds_per_run": (time.monotonic() - t0) / runs,
                }
            )
            continue
        med = statistics.median(medians)
        run_spread = (max(medians) - min(medians)) / 2 / abs(med) if med else 0.0
        rows.append(
            {
                "case": label,
                "metric": metric,
                "median": med,
                "run_spread": run_spread,
                "within_run": statistics.median(inner),
                "invalid": invalid,
                "failed": failed,
                "seconds_per_run": (time.monotonic() - t0) / runs,
            }
        )
    return rows


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"±{x * 100:.1f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--skip-spread", action="store_true")
    ap.add_argument("--skip-capacity", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    configure("error")
    out: dict = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
    if not args.skip_capacity:
        out["capacity"] = capacity(args.duration)
    if not args.skip_spread:
        out["spread"] = spread(args.runs, args.repeats, args.duration)
    out["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{out['cpus']} CPUs, load average {out['load_average'][0]:.2f} before, "
        f"{out['load_average_after'][0]:.2f} after"
    )
    if "capacity" in out:
        print("\ncapacity (plain veth sandbox; median of 3 repeats)")
        print_table(
            ("PROBE", "WHAT", "VALUE", "SPREAD", "LIMITED BY"),
            [
                (r["probe"], r["what"], _num(r["value"]), _pct(r["spread"]), r["limit"])
                for r in out["capacity"]
            ],
        )
    if "spread" in out:
        print(
            f"\nrun-to-run spread ({args.runs} runs of run_probe, each {args.repeats} x {args.duration:g} s)"
        )
        print_table(
            ("CASE", "METRIC", "MEDIAN", "RUN SPREAD", "WITHIN RUN", "INVALID", "FAILED", "S/RUN"),
            [
                (
                    r["case"],
                    r["metric"],
                    _num(r["median"]),
                    _pct(r["run_spread"]),
                    _pct(r["within_run"]),
                    f"{r['invalid']}/{args.runs}",
                    f"{r['failed']}/{args.runs}",
                    f"{r['seconds_per_run']:.1f}",
                )
                for r in out["spread"]
            ],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
