"""`tuner profiles list | show | diff | active`: the profile catalogue (by name) and what is applied."""

from __future__ import annotations

import argparse

from tuner.cli.output import print_json, print_table
from tuner.knobs import json_value
from tuner.profiles import Profile, entries, load_profile, resolve_profile
from tuner.units import format_value

__all__ = ["register"]


def _evidence_line(profile: Profile) -> str:
    ev = profile.evidence
    if not ev:
        return "none (a hand-written profile: nothing was measured)"
    verdict = ev.get("verdict") or "(no verdict)"
    return f"{verdict}" + (f"; confidence {ev['confidence']}" if "confidence" in ev else "")


def cmd_list(args: argparse.Namespace) -> int:
    found = entries()
    if args.json:
        print_json(
            [{"name": e.name, "file": str(e.path), "source": e.source, "shadowed": e.shadowed} for e in found]
        )
        return 0
    if not found:
        print("No profiles found (looked in /etc/tuner/profiles and the shipped ones).")
        return 0
    rows = []
    for e in found:
        try:
            description = load_profile(e.path).description.splitlines()[0] if not e.shadowed else ""
        except (IndexError, ValueError):
            description = ""
        except Exception as exc:  # noqa: BLE001 - one broken file must not hide the others
            description = f"(unreadable: {exc})"
        rows.append((e.name + (" (hidden)" if e.shadowed else ""), e.source, description[:70]))
    print_table(("NAME", "SOURCE", "DESCRIPTION"), rows)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    file = resolve_profile(args.profile)
    profile = load_profile(file)
    if args.json:
        print_json(
            {
                "name": profile.name,
                "file": str(file),
                "description": profile.description,
                "created": profile.created.isoformat(),
                "tuner_version": profile.tuner_version or None,
                "workload": profile.workload.to_dict() if profile.workload else None,
                "path": profile.path.to_dict() if profile.path else None,
                "sysctl": {k: json_value(v) for k, v in profile.sysctl.items()},
                "socket": {k: json_value(v) for k, v in profile.socket.items()},
                "evidence": profile.evidence or None,
            }
        )
        return 0
    print(f"{profile.name}  ({file})")
    if profile.description:
        print(f"  {profile.description.strip()}")
    origin = (
        f"tuner {profile.tuner_version} on kernel {profile.kernel}"
        if profile.tuner_version
        else "hand-written"
    )
    print(f"created   {profile.created.isoformat()} ({origin})")
    if profile.workload:
        print(f"workload  {profile.workload.kind.value}")
    if profile.path:
        print(f"path      {profile.path.describe()}")
    print(f"evidence  {_evidence_line(profile)}")
    rows = [(k, "sysctl", format_value(v, unset="-")) for k, v in profile.sysctl.items()]
    rows += [(k, "socket", format_value(v, unset="-")) for k, v in profile.socket.items()]
    print()
    print_table(("KNOB", "WHERE", "VALUE"), rows) if rows else print("(no settings)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    a, b = (load_profile(resolve_profile(ref)) for ref in (args.a, args.b))
    knobs = sorted(set(a.assignment) | set(b.assignment))
    differ = [
        (k, a.assignment.get(k), b.assignment.get(k))
        for k in knobs
        if a.assignment.get(k) != b.assignment.get(k)
    ]
    if args.json:
        print_json(
            {
                "a": a.name,
                "b": b.name,
                "same": not differ,
                "differ": [{"knob": k, "a": json_value(x), "b": json_value(y)} for k, x, y in differ],
            }
        )
        return 0 if not differ else 1
    if not differ:
        print(f"{a.name} and {b.name} set the same values ({len(knobs)} settings).")
        return 0
    print_table(
        ("KNOB", a.name, b.name),
        [(k, format_value(x, unset="-"), format_value(y, unset="-")) for k, x, y in differ],
    )
    return 1


def cmd_active(args: argparse.Namespace) -> int:
    from tuner.apply.journal import Journal
    from tuner.apply.target import Target
    from tuner.cli.apply import state_dir_from

    target = Target(args.netns)
    txns = [t for t in Journal(state_dir_from(args), target).transactions() if t.outstanding]
    if args.json:
        print_json(
            {
                "target": target.netns or "host",
                "active": [
                    {
                        "profile": t.profile,
                        "applied": t.time,
                        "state": t.state,
                        "reason": t.reason,
                        "knobs": [s.knob for s in t.steps if hasattr(s, "knob")],
                    }
                    for t in txns
                ],
            }
        )
        return 0
    if not txns:
        print(f"No profile applied on {target.describe()} (nothing to roll back).")
        return 0
    print_table(
        ("PROFILE", "APPLIED", "KNOBS", "REASON"),
        [
            (t.profile, t.time, " ".join(s.knob for s in t.steps if hasattr(s, "knob")), t.reason)
            for t in txns
        ],
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profiles",
        help="the profile catalogue: list, show, diff, and what is applied",
        description="Profiles are found by name in /etc/tuner/profiles, then among the profiles "
        "shipped with tuner; apply, verify and render take a name or a path.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    v = verbs.add_parser("list", help="every profile by name, with where it comes from")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=cmd_list)
    v = verbs.add_parser("show", help="a profile's settings, origin and evidence")
    v.add_argument("profile", metavar="PROFILE", help="profile name or file")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=cmd_show)
    v = verbs.add_parser("diff", help="the settings two profiles set differently (exit 1 when they differ)")
    v.add_argument("a", metavar="A", help="profile name or file")
    v.add_argument("b", metavar="B", help="profile name or file")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=cmd_diff)
    v = verbs.add_parser(
        "active", help="the profiles applied (and not rolled back), from tuner apply's journal"
    )
    v.add_argument("--netns", metavar="NS", help="the applies inside this network namespace")
    v.add_argument(
        "--state-dir",
        metavar="DIR",
        help="directory of the journal (default: $TUNER_STATE_DIR or /var/lib/tuner)",
    )
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=cmd_active)
