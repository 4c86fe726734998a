"""`tuner probe`: one measurement of a workload in a sandbox, printed readably (or as JSON).

tuner probe rr --write-pattern split --set TCP_NODELAY=on
tuner probe bulk --rtt 50ms --rate 100mbit --set SO_RCVBUF=64KiB --repeats 3
tuner probe burst --set backlog=8 --json
"""

from __future__ import annotations

import argparse
import math
import sys

from tuner.cli.output import Progress, print_json, print_table, require_root
from tuner.cli.workload_args import (
    add_path_arguments,
    add_settings_argument,
    add_workload_arguments,
    assignment_from_args,
    path_from_args,
    positive_duration,
    workload_from_args,
)
from tuner.errors import InputError
from tuner.knobs import Assignment
from tuner.probe import METRICS, Measurement, run_probe
from tuner.probe.target import read_target

__all__ = ["KEY_COUNTERS", "cmd_probe", "register", "render_measurement"]

# counters worth showing by default (all of them are in --json)
KEY_COUNTERS = (
    "TcpExt.ListenOverflows",
    "TcpExt.ListenDrops",
    "Tcp.RetransSegs",
    "TcpExt.TCPTimeouts",
    "TcpExt.TCPSynRetrans",
    "TcpExt.DelayedACKs",
    "TcpExt.TCPKeepAlive",
    "Udp.RcvbufErrors",
    "Udp.SndbufErrors",
    "Udp.InErrors",
    "TcpExt.TCPAbortOnTimeout",
    "TcpExt.TCPBacklogDrop",
)


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "":
        return f"{value * 100:.1f}%"
    if unit == "%":
        return f"{value:.1f}%"
    if abs(value) >= 1000 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def render_measurement(m: Measurement, file=None) -> None:
    """A measurement as a person reads it: what, where, the metrics, the evidence, the verdict."""
    file = file or sys.stdout
    w = m.workload
    settings = Assignment(m.assignment).text()
    print(f"workload  {w.kind.value}", file=file)
    print(f"path      {m.path.describe()} (backend: {m.backend})", file=file)
    print(f"settings  {settings or 'kernel and application defaults'}", file=file)
    print(f"runs      {m.repeats} repeats of {m.duration:g} s (warm-up excluded)", file=file)
    if m.baseline:
        print(
            f"baseline  the live sysctls of the {m.baseline.get('source')} (copied into the sandbox)",
            file=file,
        )
    if m.metrics:
        print(file=file)
        rows = []
        for name, stat in m.metrics.items():
            info = METRICS[name]
            interval = f"{_fmt(stat.lo, info.unit)} .. {_fmt(stat.hi, info.unit)}" if m.repeats > 1 else "-"
            unit = info.unit if info.unit not in ("", "%") else ""
            rows.append((name, _fmt(stat.median, info.unit), interval, unit, info.better.value))
        print_table(("METRIC", "MEDIAN", "INTERVAL", "UNIT", "BETTER"), rows, file=file)
    for name, value in m.computed.items():
        known = METRICS.get(name)
        unit = known.unit if known is not None and known.unit not in ("", "%") else ""
        print(
            f"computed  {name} = {_fmt(value, known.unit if known else '')} {unit} "
            "(from the settings, not measured)".replace("  (", " ("),
            file=file,
        )
    counters = [
        (side, key, value)
        for side, values in m.counters.items()
        for key, value in values.items()
        if key in KEY_COUNTERS
    ]
    if counters:
        print(file=file)
        print_table(("SIDE", "COUNTER", "DELTA"), counters, file=file)
    h = m.health
    if h:
        print(file=file)
        print(
            f"path health  {int(h.get('packets', 0))} packets, {int(h.get('dropped_loss', 0))} lost (emulated), "
            f"{int(h.get('dropped_queue', 0))} queue drops, {int(h.get('tun_drops', 0))} TUN drops, "
            f"late p99 {h.get('late_p99_ms', 0.0):.2f} ms, link CPU {h.get('cpu_seconds', 0.0):.2f} s"
            + (
                f", hypervisor steal {h['steal_share'] * 100:.0f}% of the CPU (worst repeat)"
                if h.get("steal_share", 0.0) >= 0.01
                else ""
            ),
            file=file,
        )
        if h.get("rate_bps"):
            print(
                f"path rate    {h['rate_bps'] / 1e6:,.0f} Mbit/s asked, {h.get('delivered_bps', 0.0) / 1e6:,.0f} "
                f"Mbit/s delivered on average over the whole run (warm-ups included); busiest delay-line "
                f"process {h.get('line_cpu_share', 0.0) * 100:.0f}% of a core"
                f"{', super-packets' if h.get('offload') else ''}",
                file=file,
            )
    for note in m.notes:
        print(f"note         {note}", file=file)
    print(file=file)
    if m.failed:
        print(f"FAILED: {m.error}", file=file)
    elif not m.valid:
        print(f"INVALID: {m.invalid_reason}", file=file)
    elif m.held_back:
        print(
            f"valid, held back: {m.held_back}: the figures are a pessimistic bound for these settings "
            "(usable for a candidate, not as a baseline)",
            file=file,
        )
    else:
        print("valid: neither the path nor the load generator was the bottleneck", file=file)


def cmd_probe(args: argparse.Namespace) -> int:
    from tuner.cli import EXIT_FAILED

    workload = workload_from_args(args)
    path = path_from_args(args)
    assignment = assignment_from_args(args)
    if args.repeats < 1:
        raise InputError(f"--repeats {args.repeats}: need at least one repeat")
    require_root("running a probe (network namespaces)")
    target = read_target(args.netns)
    progress = Progress()
    progress.update(
        0, f"measuring {workload.kind.value}: {args.repeats} x {args.duration:g} s over {path.describe()}"
    )
    m = run_probe(workload, path, assignment, repeats=args.repeats, duration=args.duration, target=target)
    progress.close()
    if args.json:
        print_json(m.to_dict())
    else:
        render_measurement(m)
    return EXIT_FAILED if m.failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="measure a workload in a sandbox under given settings",
        description="Run one workload in a fresh sandbox (two namespaces joined by an emulated path) under the "
        "given settings and print the measurement: metrics as median and interval over the "
        "repeats, kernel counters of both sides, the path's health, and whether the run is valid. "
        "Exit 1 if the run failed.",
        epilog="examples: tuner probe rr --write-pattern split --set TCP_NODELAY=on | "
        "tuner probe bulk --rtt 50ms --rate 100mbit --set SO_RCVBUF=64KiB | "
        "tuner probe burst --set backlog=8",
    )
    add_workload_arguments(p)
    add_path_arguments(p)
    add_settings_argument(p)
    p.add_argument("--repeats", type=int, default=3, metavar="N", help="measured repeats (default 3)")
    p.add_argument(
        "--duration",
        type=positive_duration,
        default=1.0,
        metavar="DURATION",
        help="measured seconds per repeat, warm-up excluded (default 1s; keepalive waits 10x this "
        "for a dead peer)",
    )
    p.add_argument(
        "--netns",
        metavar="NS",
        help="the target whose live per-namespace sysctls are the baseline, copied into the sandbox "
        "(default: this host's)",
    )
    p.add_argument("--json", action="store_true", help="print the measurement as JSON")
    p.set_defaults(func=cmd_probe)
