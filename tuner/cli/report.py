"""`tuner report SOURCE [--journal J] [-o report.html]`: the pictures and evidence of a search as HTML."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner.errors import InputError
from tuner.profiles import resolve_profile
from tuner.trusted import atomic_write

__all__ = ["register", "write_report"]


def _sources(source: str, journal: str | None) -> tuple[Path | None, Path | None]:
    """(profile, journal) from SOURCE: a journal (.jsonl), a daemon state directory (its newest profile),
    or a profile name or file."""
    path = Path(source)
    if source.endswith(".jsonl"):
        return None, path
    if path.is_dir():
        profiles = sorted((path / "profiles").glob("*.toml"), key=lambda p: p.stat().st_mtime)
        if not profiles:
            raise InputError(
                f"{path}: no profiles in {path / 'profiles'}",
                hint="give a daemon state directory, a profile or a search journal",
            )
        return profiles[-1], Path(journal) if journal else None
    return resolve_profile(source), Path(journal) if journal else None


def write_report(profile: Path | None, journal: Path | None, out: Path) -> Path:
    from tuner.report import render_html, report_data  # matplotlib: only when a report is drawn

    if not out.parent.is_dir():
        raise InputError(f"{out}: the directory {out.parent} does not exist", hint="create it first")
    atomic_write(out, render_html(report_data(profile, journal)).encode(), mode=0o644)
    return out


def cmd_report(args: argparse.Namespace) -> int:
    profile, journal = _sources(args.source, args.journal)
    out = write_report(profile, journal, Path(args.output))
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="an HTML report of a search: convergence, before/after, knobs, evidence",
        description="Write one self-contained HTML file (inline pictures, no network) with the "
        "search's convergence, each metric's samples before and after, every knob's "
        "levels against the score, the path's health and the settings to apply. "
        "SOURCE is a profile (name or file), a search journal (.jsonl) or the "
        "daemon's state directory.",
    )
    p.add_argument(
        "source", metavar="SOURCE", help="profile, search journal (.jsonl) or daemon state directory"
    )
    p.add_argument("--journal", metavar="FILE", help="the search journal of the profile (for the samples)")
    p.add_argument(
        "-o", "--output", default="report.html", metavar="FILE", help="where to write (report.html)"
    )
    p.set_defaults(func=cmd_report)
