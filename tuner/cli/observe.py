"""`tuner observe`: the services this host (or a namespace) runs, their class, path and symptoms."""

from __future__ import annotations

import argparse
import os

from tuner.cli.output import Progress, print_json, print_table, require_root
from tuner.errors import NetnsNotFoundError
from tuner.netns import netns_exists
from tuner.observe import Observation, observe
from tuner.units import format_duration, parse_duration

__all__ = ["register", "render"]


def _process(svc) -> str:
    return svc.process.describe() if svc.process else "-"


def _path(svc) -> str:
    path = svc.path
    if svc.role.value == "udp":
        return "-"
    text = f"rtt {format_duration(path.rtt)}"
    if path.rate_bps:
        text += f", {path.rate_bps / 1e6:.3g} Mbit/s"
    if path.loss:
        text += f", loss {path.loss:.2%}"
    return text


def _traffic(svc) -> str:
    shape = svc.shape
    parts = []
    if shape.connection_rate:
        parts.append(f"{shape.connection_rate:.3g} conn/s")
    if shape.exchange_rate:
        parts.append(f"{shape.exchange_rate:.3g} exch/s")
    if shape.throughput_bps:
        parts.append(f"{shape.throughput_bps / 1e6:.3g} Mbit/s")
    if shape.udp_drops:
        parts.append(f"{shape.udp_drops} drops")
    return ", ".join(parts) or "-"


def render(obs: Observation) -> None:
    """The human report: a table of services, then each symptom with its evidence and knobs."""
    where = f"namespace {obs.netns}" if obs.netns else "this host"
    total = sum(obs.sockets.values())
    print(
        f"Observed {where} for {format_duration(obs.duration)}: {total} sockets "
        f"(read in {format_duration(obs.snapshot_seconds)}), {len(obs.services)} services."
    )
    if obs.services:
        print()
        print_table(
            ("SERVICE", "PROCESS", "CLASS", "CONNS", "TRAFFIC", "PATH", "SYMPTOMS"),
            [
                (
                    s.key,
                    _process(s),
                    s.service_class.value,
                    s.shape.connections,
                    _traffic(s),
                    _path(s),
                    ", ".join(y.name for y in s.symptoms) or "-",
                )
                for s in obs.services
            ],
        )
    for svc in obs.needs_tuning:
        print()
        print(
            f"{svc.key} ({_process(svc)}): {svc.service_class.value}; search workload {svc.workload.kind.value}"
            f" over {svc.path.describe()}"
        )
        for y in svc.symptoms:
            print(f"  - {y.name}: {y.evidence}")
            print(f"    knobs: {', '.join(y.knobs)}")
        for note in svc.notes:
            print(f"  note: {note}")
    if obs.symptoms:
        print()
        print("Namespace-wide:")
        for y in obs.symptoms:
            print(f"  - {y.name}: {y.evidence}")
            print(f"    knobs: {', '.join(y.knobs)}")
    if not obs.needs_tuning and not obs.symptoms:
        print()
        print("No symptoms: nothing here needs tuning.")


def cmd_observe(args: argparse.Namespace) -> int:
    duration = parse_duration(args.duration)
    if args.netns:
        require_root("observing another network namespace")
        if not netns_exists(args.netns):
            raise NetnsNotFoundError(args.netns)
    progress = Progress()
    progress.update(0, f"observing {args.netns or 'this host'} for {format_duration(duration)}")
    try:
        obs = observe(duration, args.netns)
    finally:
        progress.close()
    if args.json:
        print_json(obs.to_dict())
    else:
        if os.geteuid() != 0:
            print("(not root: processes of other users are not attributed)")
        render(obs)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "observe",
        help="watch live sockets: services, their class, path and symptoms",
        description="Watch every TCP and UDP socket (sock_diag, tcp_info) and the kernel counters for a "
        "while, group the sockets into services, and report each service's class, path "
        "estimate and symptoms with the knobs that address them.",
    )
    p.add_argument(
        "--duration", default="10s", metavar="TIME", help="how long to watch (e.g. 10s, 500ms; default 10s)"
    )
    p.add_argument("--netns", metavar="NS", help="watch this network namespace instead of the host's")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_observe)
