"""`tuner knobs`: every knob of the catalogue with its live value."""

from __future__ import annotations

import argparse

from tuner.cli.output import print_json, print_table
from tuner.knobs import CATALOGUE, Kind, SysctlTree
from tuner.netns import run_in_netns

__all__ = ["live_values", "register"]


def live_values() -> dict[str, object]:
    """Live value of every sysctl knob in the calling process's namespace (None = not available)."""
    tree = SysctlTree()
    return {k.name: tree.read(k) for k in CATALOGUE.values() if k.kind is Kind.SYSCTL}


def _show(value: object) -> str:
    if value is None:
        return "not available"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


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
                    "available": k.kind is not Kind.SYSCTL or live.get(k.name) is not None,
                    "live": list(v) if isinstance(v := live.get(k.name), tuple) else v,
                }
                for k in CATALOGUE.values()
            ]
        )
        return 0
    rows = []
    for k in CATALOGUE.values():
        live_text = _show(live.get(k.name)) if k.kind is Kind.SYSCTL else "(set by the application)"
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
