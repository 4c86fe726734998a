"""`tuner knobs`: every knob of the catalogue with its live value."""

from __future__ import annotations

import argparse

from tuner.cli.output import print_json, print_table
from tuner.knobs import CATALOGUE, SysctlTree, Value, json_value
from tuner.netns import run_in_netns
from tuner.units import format_value

__all__ = ["live_values", "register"]


def live_values() -> dict[str, Value | None]:
    """Live value of every sysctl knob in the calling process's namespace (None = not available)."""
    tree = SysctlTree()
    return {k.name: tree.read(k) for k in CATALOGUE.values() if k.is_sysctl}


def cmd_knobs(args: argparse.Namespace) -> int:
    live = run_in_netns(args.netns, live_values) if args.netns else live_values()
    if args.json:
        print_json(
            [
                {
                    "name": k.name,
                    "kind": k.kind.value,
                    "scope": k.scope.value,
                    "domain": k.domain.describe(),
                    "description": k.description,
                    "available": not k.is_sysctl or live.get(k.name) is not None,
                    "live": json_value(live.get(k.name)),
                }
                for k in CATALOGUE.values()
            ]
        )
        return 0
    rows = []
    for k in CATALOGUE.values():
        live_text = (
            format_value(live.get(k.name), unset="not available")
            if k.is_sysctl
            else "(set by the application)"
        )
        rows.append((k.name, k.scope.value, live_text, k.description))
    print_table(("KNOB", "SCOPE", "LIVE", "DESCRIPTION"), rows)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "knobs",
        help="list every knob with its live value",
        description="List every knob tuner knows, with its scope and live value.",
    )
    p.add_argument("--netns", metavar="NS", help="read live values inside this network namespace")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_knobs)
