"""`tuner sandbox gc|list` and `tuner doctor`: the sandbox machinery seen from the command line."""

from __future__ import annotations

import argparse
import textwrap
import time
from typing import Any

from tuner.cli.output import print_json, print_table, require_root

__all__ = ["cmd_doctor", "cmd_gc", "cmd_list", "register"]


def cmd_gc(args: argparse.Namespace) -> int:
    from tuner.sandbox import reap_stale

    require_root("removing stale sandboxes")
    removed = reap_stale()
    if args.json:
        print_json({"removed": removed})
    elif removed:
        print(f"removed {len(removed)} stale sandbox(es): {', '.join(removed)}")
    else:
        print("nothing to remove: no sandboxes or tuner- namespaces of dead tuner processes")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tuner.sandbox.registry import Registry

    records = Registry().records()
    rows: list[dict[str, Any]] = []
    for r in records:
        rows.append(
            {
                "name": r.name,
                "owner": r.owner.pid,
                "owner_alive": r.owner.alive(),
                "netns": list(r.netns),
                "helpers": [h.pid for h in r.helpers if h.alive()],
                "age_s": round(time.time() - r.created, 1),
            }
        )
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no sandboxes")
        return 0
    print_table(
        ("SANDBOX", "OWNER", "STATE", "NAMESPACES", "HELPERS", "AGE"),
        [
            (
                r["name"],
                r["owner"],
                "live" if r["owner_alive"] else "stale (run `tuner sandbox gc`)",
                " ".join(r["netns"]),
                " ".join(map(str, r["helpers"])) or "-",
                f"{r['age_s']:g} s",
            )
            for r in rows
        ],
    )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from tuner.cli import EXIT_ENVIRONMENT
    from tuner.sandbox.doctor import essential_failures, run_checks

    checks = run_checks()
    failures = essential_failures(checks)
    if args.json:
        print_json({"checks": [c.to_dict() for c in checks], "ready": not failures})
        return EXIT_ENVIRONMENT if failures else 0
    width = max(len(c.name) for c in checks)
    print("tuner doctor: what this machine supports")
    for c in checks:
        indent = " " * (10 + width + 2)
        found = textwrap.wrap(c.found, 100 - len(indent)) or [""]
        print(f"  {c.status.value:<7} {c.name:<{width}}  {found[0]}")
        for line in found[1:]:
            print(indent + line)
        for line in textwrap.wrap(c.meaning, 100 - len(indent)):
            print(indent + line)
        if c.fix and c.status.value != "ok":
            for i, line in enumerate(textwrap.wrap(c.fix, 100 - len(indent) - 5)):
                print(indent + ("fix: " if i == 0 else "     ") + line)
    if failures:
        print(f"not ready: {', '.join(c.name for c in failures)}")
        return EXIT_ENVIRONMENT
    print("ready: tuner can measure and tune on this machine")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sandbox",
        help="manage measurement sandboxes",
        description="Sandboxes are pairs of network namespaces joined by an emulated path. "
        "Every tuner command removes its own; `gc` removes those left by tuner "
        "processes that were killed.",
    )
    ssub = p.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    gc = ssub.add_parser(
        "gc",
        help="remove sandboxes left behind by dead tuner processes",
        description="Remove sandboxes, tuner- namespaces and helper processes whose owning "
        "tuner process is dead. Live sandboxes are never touched.",
    )
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.set_defaults(func=cmd_gc)
    ls = ssub.add_parser("list", help="list sandboxes and whether their owner is alive")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_list)

    d = sub.add_parser(
        "doctor",
        help="check what this machine supports",
        description="Check root, network namespaces, netem or the userspace delay line, TUN, "
        "congestion-control algorithms, tcp_info fields and firewall tools, and say "
        "what each means and how to fix a missing piece. Exit code 3 if tuner "
        "cannot work here.",
    )
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=cmd_doctor)
