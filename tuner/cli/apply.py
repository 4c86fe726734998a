"""`tuner apply`, `tuner verify`, `tuner rollback`, `tuner render`: deploying a profile.

Every verb validates the profile completely before it touches anything (bad input: exit 2, nothing
written). With ``--netns NS`` the same plan/apply/verify/rollback code runs inside that namespace; its
journal still goes to the state directory, keyed by target. Host-wide knobs do not apply inside a
namespace: the plan lists them as "not applicable" with the reason, and they are not written.
Socket settings are printed for the application owner, never applied.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tuner.apply import Applier, Change, FileWrite, Plan, Target, check_file_target, make_plan, run_in_target
from tuner.apply.plan import show_value as _show
from tuner.apply.portability import BaselineDiff, target_baseline_differences
from tuner.cli.output import print_json, print_table, require_root
from tuner.errors import UnsafeFileError
from tuner.knobs import KernelFacts, SysctlTree, json_value
from tuner.profiles import (
    Profile,
    check_trusted,
    load_profile,
    render_socket_snippets,
    render_sysctl_d,
    resolve_profile,
)

__all__ = ["DEFAULT_STATE_DIR", "register", "state_dir_from"]

DEFAULT_STATE_DIR = Path("/var/lib/tuner")


def state_dir_from(args: argparse.Namespace) -> Path:
    """--state-dir, else $TUNER_STATE_DIR, else /var/lib/tuner."""
    if getattr(args, "state_dir", None):
        return Path(args.state_dir)
    return Path(os.environ.get("TUNER_STATE_DIR") or DEFAULT_STATE_DIR)


def _target(args: argparse.Namespace) -> Target:
    target = Target(args.netns)
    if not target.is_host:
        require_root(f"working inside network namespace {args.netns}")
    return target


def _load(args: argparse.Namespace, target: Target, *, trusted_only: bool) -> Profile:
    facts = run_in_target(target, KernelFacts.read)
    return load_profile(
        resolve_profile(args.profile), facts=facts, trusted_only=trusted_only, in_netns=not target.is_host
    )


def _plan_rows(plan: Plan, done: list[Change] | None, dry_run: bool) -> list[tuple[str, str, str, str]]:
    changed = {c.knob for c in done} if done is not None else None
    rows = []
    for c in plan.changes:
        action = (
            "would change"
            if dry_run
            else ("changed" if changed is None or c.knob in changed else "already set")
        )
        rows.append((c.knob, _show(c.old), _show(c.new), action))
    rows += [(s.knob, _show(s.value), _show(s.value), "already set") for s in plan.unchanged]
    rows += [(n.knob, "-", _show(n.value), f"not applicable: {n.reason}") for n in plan.not_applicable]
    return rows


def _print_socket(profile: Profile) -> None:
    if profile.socket:
        print()
        print(render_socket_snippets(profile), end="")


# --- apply -----------------------------------------------------------------------------------------


def _plan_in_target(profile: Profile, target: Target) -> Plan:
    return make_plan(profile, SysctlTree(), target=target)


def _apply_in_target(
    profile: Profile, target: Target, state_dir: Path, files: list[FileWrite], reason: str
) -> tuple[Plan, list[Change], tuple[Path, ...], Path]:
    tree = SysctlTree()
    plan = make_plan(profile, tree, target=target)
    applier = Applier(state_dir, tree, target=target)
    changes = applier.apply(plan, reason, files=files)
    return plan, changes, applier.written_files, applier.journal_path


def cmd_apply(args: argparse.Namespace) -> int:
    args.dry_run = args.dry_run or args.check
    target = _target(args)
    if not args.dry_run:
        require_root("tuner apply")
    profile = _load(args, target, trusted_only=target.is_host and not args.dry_run)
    persist = Path(args.persist).absolute() if args.persist else None
    files = []
    if persist is not None:
        check_file_target(persist)
        # for a namespace: its own knobs only (host-wide ones installed would change the host at boot)
        files.append(FileWrite(persist, render_sysctl_d(profile, netns=target.netns).encode()))
    if args.dry_run:
        plan = run_in_target(target, _plan_in_target, profile, target)
        warning = None
        if target.is_host:
            try:
                check_trusted(args.profile, os.stat(resolve_profile(args.profile)))
            except UnsafeFileError as err:
                warning = f"{err.message} ({err.hint})"
        return _report_apply(
            args,
            profile,
            plan,
            None,
            (),
            None,
            persist,
            warning,
            target_baseline_differences(profile, target),
        )
    differs = target_baseline_differences(profile, target)  # read before the apply changes anything
    state_dir = state_dir_from(args)
    reason = f"tuner apply {args.profile}"
    plan, done, written, journal = run_in_target(
        target, _apply_in_target, profile, target, state_dir, files, reason
    )
    return _report_apply(args, profile, plan, done, written, journal, persist, None, differs)


EXIT_WOULD_CHANGE = 1  # `apply --check`: the plan has changes (like verify's drift)


def _check_code(args: argparse.Namespace, plan: Plan) -> int:
    """``--check``: 0 when nothing would change, 1 when something would; every other apply: 0."""
    return EXIT_WOULD_CHANGE if getattr(args, "check", False) and plan.changes else 0


def _warn_baseline(verb: str, differs: Sequence[BaselineDiff]) -> None:
    for d in differs:
        print(f"tuner {verb}: warning: {d.message()}", file=sys.stderr)


def _report_apply(
    args: argparse.Namespace,
    profile: Profile,
    plan: Plan,
    done: list[Change] | None,
    written: tuple[Path, ...],
    journal: Path | None,
    persist: Path | None,
    warning: str | None,
    differs: Sequence[BaselineDiff] = (),
) -> int:
    target = plan.target
    if warning:
        print(f"tuner apply: note: a real apply would refuse this file: {warning}", file=sys.stderr)
    _warn_baseline("apply", differs)
    if args.json:
        data = plan.to_dict()
        data.update(
            {
                "baseline_differs": [d.to_dict() for d in differs],
                "dry_run": args.dry_run,
                "changed": bool(done) or bool(written),  # something was written (never in a dry run)
                "would_change": bool(plan.changes),  # the plan had changes (dry run: what it would do)
                "applied": [c.to_dict() for c in done] if done is not None else [],
                "persist": str(persist) if persist else None,
                "persisted": bool(written),
                "journal": str(journal) if journal else None,
            }
        )
        print_json(data)
        return _check_code(args, plan)
    print(f"Profile {profile.name} on {target.describe()}:")
    rows = _plan_rows(plan, done, args.dry_run)
    if rows:
        print_table(("KNOB", "LIVE", "PROFILE", "ACTION"), rows)
    else:
        print("  (the profile sets no kernel settings)")
    applicable = len(plan.changes) + len(plan.unchanged)
    if args.dry_run:
        print(
            f"Dry run: {len(plan.changes)} of {applicable} applicable settings would change; nothing was written."
        )
        if persist:
            print(f"Would write {persist}.")
    elif done:
        print(
            f"Changed {len(done)} of {applicable} applicable settings (originals saved in {journal}); "
            f"undo with `tuner rollback{target.cli_flag()}`."
        )
    else:
        print(f"Nothing to change: all {applicable} applicable settings already match.")
    if persist and not args.dry_run:
        print(f"Wrote {persist}." if written else f"{persist} is already up to date.")
    _print_socket(profile)
    return _check_code(args, plan)


# --- verify ----------------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    target = _target(args)
    profile = _load(args, target, trusted_only=False)
    plan = run_in_target(target, _plan_in_target, profile, target)
    differs = target_baseline_differences(profile, target)
    _warn_baseline("verify", differs)
    ok = plan.empty
    if args.json:
        print_json(
            {
                "ok": ok,
                "changed": False,
                "profile": profile.name,
                "target": target.netns or "host",
                "baseline_differs": [d.to_dict() for d in differs],
                "drift": [
                    {"knob": c.knob, "expected": json_value(c.new), "live": json_value(c.old)}
                    for c in plan.changes
                ],
                "matched": [s.to_dict() for s in plan.unchanged],
                "not_applicable": [n.to_dict() for n in plan.not_applicable],
            }
        )
        return 0 if ok else 1
    na = f", {len(plan.not_applicable)} not applicable" if plan.not_applicable else ""
    if ok:
        print(f"OK: {profile.name} matches {target.describe()} ({len(plan.unchanged)} settings{na}).")
    else:
        print(
            f"DRIFT: {len(plan.changes)} of {len(plan.changes) + len(plan.unchanged)} settings of "
            f"{profile.name} differ on {target.describe()}:"
        )
        print_table(
            ("KNOB", "EXPECTED", "LIVE"), [(c.knob, _show(c.new), _show(c.old)) for c in plan.changes]
        )
    for n in plan.not_applicable:
        print(f"  {n.knob}: not applicable ({n.reason})")
    return 0 if ok else 1


# --- rollback --------------------------------------------------------------------------------------


def _rollback_in_target(
    target: Target, state_dir: Path, force: bool = False
) -> tuple[list[Change], tuple[Path, ...]]:
    applier = Applier(state_dir, SysctlTree(), target=target)
    restored = applier.rollback(force=force)
    return restored, applier.restored_files


def cmd_rollback(args: argparse.Namespace) -> int:
    target = _target(args)
    require_root("tuner rollback")
    state_dir = state_dir_from(args)
    restored, files = run_in_target(target, _rollback_in_target, target, state_dir, args.force)
    if args.json:
        print_json(
            {
                "changed": bool(restored or files),
                "target": target.netns or "host",
                "restored": [c.to_dict() for c in restored],
                "files": [str(f) for f in files],
            }
        )
        return 0
    if not restored and not files:
        print(f"Nothing to roll back on {target.describe()}.")
        return 0
    print(f"Rolled back on {target.describe()} (newest first):")
    if restored:
        print_table(("KNOB", "WAS", "RESTORED"), [(c.knob, _show(c.old), _show(c.new)) for c in restored])
    for f in files:
        print(f"  restored {f}")
    return 0


# --- render ----------------------------------------------------------------------------------------


def cmd_render(args: argparse.Namespace) -> int:
    profile = load_profile(resolve_profile(args.profile))
    if args.format == "sysctl":
        print(render_sysctl_d(profile), end="")
    else:
        print(render_socket_snippets(profile), end="")
    return 0


def _profile_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", metavar="PROFILE", help="profile name (`tuner profiles list`) or file (.toml)")


def _common(p: argparse.ArgumentParser, netns_help: str, *, state: bool) -> None:
    p.add_argument("--netns", metavar="NS", help=netns_help)
    if state:
        p.add_argument(
            "--state-dir",
            metavar="DIR",
            help="directory of the journal of originals (default: $TUNER_STATE_DIR or /var/lib/tuner)",
        )
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "apply",
        help="apply a profile's kernel settings (all or nothing, reversible)",
        description="Show the plan (knob, live value, new value) and apply it. Originals are "
        "journaled before each write; if a write fails, everything written is "
        "restored. Applying twice changes nothing the second time. Socket settings "
        "are printed for the application, never applied.",
    )
    _profile_argument(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan, write nothing (exit 0)")
    p.add_argument(
        "--check",
        action="store_true",
        help="like --dry-run, but exit 1 when something would change (0 when nothing would)",
    )
    p.add_argument(
        "--persist",
        metavar="PATH",
        help="also write the settings as a sysctl.d file (atomically) "
        "so they survive a reboot, e.g. /etc/sysctl.d/90-tuner.conf",
    )
    _common(
        p,
        "apply inside this network namespace (host-wide knobs are reported as not applicable there)",
        state=True,
    )
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser(
        "verify",
        help="check that live values match a profile (exit 1 on drift)",
        description="Compare live values with a profile: exit 0 when they match, 1 with a per-key "
        "diff when they do not. Knobs absent here are reported as not applicable.",
    )
    _profile_argument(p)
    _common(p, "check inside this network namespace", state=False)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "rollback",
        help="restore what tuner apply changed, newest first",
        description="Restore the original values of every apply not yet rolled back, newest "
        "first, including applies cut short by a crash.",
    )
    _common(p, "roll back inside this network namespace", state=True)
    p.add_argument(
        "--force",
        action="store_true",
        help="restore the originals even of knobs someone else changed since tuner applied them",
    )
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser(
        "render",
        help="print a profile as a sysctl.d file or as socket settings",
        description="Print a profile's kernel settings as a sysctl.d file, or its socket settings "
        "as Python setsockopt lines and nginx listen parameters.",
    )
    _profile_argument(p)
    p.add_argument(
        "--format", choices=("sysctl", "socket"), default="sysctl", help="what to print (default: sysctl)"
    )
    p.set_defaults(func=cmd_render)
