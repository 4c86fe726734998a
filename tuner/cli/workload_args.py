"""Command-line flags that describe a workload, a path and settings; shared by `probe` and `recommend`.

    add_workload_arguments(parser); add_path_arguments(parser); add_settings_argument(parser)
    workload = workload_from_args(args); path = path_from_args(args); assignment = assignment_from_args(args)

A workload starts from :data:`tuner.kinds.DEFAULT_WORKLOADS` for its kind; only the flags given
change it. Sizes take units (``--request-size 4KiB``), durations too (``--think-time 10ms``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tuner.errors import InputError
from tuner.kinds import DEFAULT_WORKLOADS, spec
from tuner.knobs import Assignment, KernelFacts
from tuner.knobs.parse import parse_settings
from tuner.units import parse_duration, parse_rate, parse_ratio, parse_size
from tuner.workload import (
    Direction,
    NetworkPath,
    Workload,
    WorkloadKind,
    WritePattern,
)

__all__ = [
    "add_path_arguments",
    "add_settings_argument",
    "add_workload_arguments",
    "assignment_from_args",
    "path_from_args",
    "positive_duration",
    "workload_from_args",
]


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise InputError(f"{text!r} must be at least 1")
    return value


def _per_second(text: str) -> float:
    try:
        value = float(text.removesuffix("/s"))
    except ValueError:
        raise InputError(
            f"{text!r} is not a rate per second", hint="write a number, e.g. 20000 or 20000/s"
        ) from None
    if value <= 0:
        raise InputError(f"{text!r} must be positive")
    return value


def positive_duration(text: str) -> float:
    """An argparse type: a duration (``1s``, ``500ms``) greater than zero."""
    try:
        value = parse_duration(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


# field -> (flag, parser, metavar, help)
_SHAPE: dict[str, tuple[str, Callable[[str], Any], str, str]] = {
    "request_size": ("--request-size", parse_size, "SIZE", "rr: bytes per request"),
    "response_size": (
        "--response-size",
        parse_size,
        "SIZE",
        "rr: bytes per response; memory: bytes pending per connection",
    ),
    "write_pattern": (
        "--write-pattern",
        WritePattern,
        "single|split",
        "rr: one write per message, or header + body",
    ),
    "connections": ("--connections", _count, "N", "rr: concurrent connections"),
    "think_time": ("--think-time", parse_duration, "DURATION", "rr: pause between requests on a connection"),
    "streams": ("--streams", _count, "N", "bulk: parallel streams"),
    "direction": ("--direction", Direction, "upload|download", "bulk: upload is client -> server"),
    "burst_connections": ("--burst-connections", _count, "N", "burst: connections in the burst"),
    "burst_threads": ("--burst-threads", _count, "N", "burst: client threads connecting at once"),
    "accept_rate": ("--accept-rate", _per_second, "PER_S", "burst: accepts per second by the server"),
    "udp_rate": ("--udp-rate", _per_second, "PER_S", "udp: datagrams per second offered"),
    "udp_size": ("--udp-size", parse_size, "SIZE", "udp: bytes per datagram"),
    "udp_burst": ("--udp-burst", _count, "N", "udp: datagrams sent back to back"),
    "service_rate": (
        "--service-rate",
        _per_second,
        "PER_S",
        "udp: datagrams per second the reader processes",
    ),
    "idle_connections": ("--idle-connections", _count, "N", "keepalive, memory: connections held open"),
}


def _wrap(fn: Callable[[str], Any], flag: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return fn(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(f"{exc}" + (f" ({exc.hint})" if exc.hint else "")) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not accepted by {flag}") from None

    parse.__name__ = flag
    return parse


def add_workload_arguments(parser: argparse.ArgumentParser, *, kind_optional: bool = False) -> None:
    """The WORKLOAD positional and the shape flags; ``kind_optional`` lets a verb take neither (--auto)."""
    parser.add_argument(
        "workload",
        choices=[k.value for k in WorkloadKind],
        metavar="WORKLOAD",
        nargs="?" if kind_optional else None,
        help="kind of traffic: " + ", ".join(k.value for k in WorkloadKind),
    )
    group = parser.add_argument_group("workload shape (defaults: the built-in workload of that kind)")
    for field, (flag, fn, metavar, help_text) in _SHAPE.items():
        group.add_argument(flag, dest=f"shape_{field}", type=_wrap(fn, flag), metavar=metavar, help=help_text)


def workload_from_args(args: argparse.Namespace) -> Workload:
    base = DEFAULT_WORKLOADS[WorkloadKind(args.workload)]
    changes = {
        f: getattr(args, f"shape_{f}") for f in _SHAPE if getattr(args, f"shape_{f}", None) is not None
    }
    return base.with_(**changes)


def add_path_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("path between the peers (default: a plain link)")
    group.add_argument(
        "--rtt",
        type=_wrap(parse_duration, "--rtt"),
        default=0.0,
        metavar="DURATION",
        help="round-trip time, e.g. 50ms (bulk searches: 50ms with --rate 100mbit unless either is given)",
    )
    group.add_argument(
        "--rate", type=_wrap(parse_rate, "--rate"), metavar="RATE", help="bottleneck rate, e.g. 100mbit"
    )
    group.add_argument(
        "--loss",
        type=_wrap(parse_ratio, "--loss"),
        default=None,
        metavar="RATIO",
        help="packet loss each way, e.g. 0.5%% (default 0; keepalive: 1%%, the risk it is judged on)",
    )


def path_from_args(args: argparse.Namespace, *, search: bool = False) -> NetworkPath:
    """The path the flags describe; for a ``search`` given neither --rtt nor --rate, the kind's search
    path where it has one (see ``KindSpec.search_path``), with the flags' loss."""
    kind = getattr(args, "workload", None)
    record = spec(WorkloadKind(kind)) if kind in {k.value for k in WorkloadKind} else None
    loss = args.loss
    if loss is None:
        loss = record.default_loss if record is not None else 0.0
    if (
        search
        and record is not None
        and record.search_path is not None
        and not args.rtt
        and args.rate is None
    ):
        return replace(record.search_path, loss=loss)
    return NetworkPath(rtt=args.rtt, rate_bps=args.rate, loss=loss)


def add_settings_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="a setting to measure under (repeatable): a sysctl, a socket option or backlog, "
        "e.g. --set TCP_NODELAY=on --set net.ipv4.tcp_rmem=4096,131072,6291456",
    )


def assignment_from_args(args: argparse.Namespace) -> Assignment:
    """The ``--set`` settings, validated through the knob catalogue and this kernel (KnobError: exit 2)."""
    return parse_settings(args.settings, KernelFacts.read())
