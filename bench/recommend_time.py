"""Wall time of `tuner recommend KIND` with the default budget, per kind: median of ``--runs`` runs.

    sudo .venv/bin/python bench/recommend_time.py [--runs 3] [--kinds rr,udp,...] [--stock]
                                                  [--out bench/results/recommend_time]

Runs the CLI as a user does (default budget, probe settings and seed), one scenario after another, and
records per run: wall time, the verdict, trials, pruned trials and measurements (from the profile's
evidence). Other work on the machine makes every figure slower; the load average before and after is
recorded with the results.

--stock: the target is a namespace with Debian 12's stock values (bench/regenerate_profiles.py: cubic,
tcp_rmem max 6 MiB, rmem_max 208 KiB emulated per socket), as the issue's figures ask, instead of this
host's own generous defaults. The CLI's `--netns` cannot describe host-only limits, so each run is a
fresh Python process that parses the same flags with the CLI's parser, creates its own stock namespace
and calls the search the CLI calls (with the CLI's progress view); the namespace is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path as FsPath
from typing import Any

REPO = FsPath(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "bench"))

from tuner.profiles import load_profile  # noqa: E402

SCENARIOS: dict[str, list[str]] = {
    "rr": ["rr", "--write-pattern", "split"],
    "burst": ["burst", "--burst-connections", "600", "--burst-threads", "64"],
    "udp": ["udp"],
    "keepalive": ["keepalive"],
    "bulk": ["bulk"],
    "bulk-200ms": ["bulk", "--rtt", "200ms", "--rate", "100mbit"],
    "memory": ["memory"],
    "lossy": ["bulk", "--rtt", "50ms", "--rate", "100mbit", "--loss", "1%"],
}


def run(flags: list[str], out: FsPath, *, stock: bool = False) -> dict[str, Any]:
    if stock:
        cmd = [sys.executable, __file__, "--child", *flags, "-o", str(out)]
    else:
        cmd = [sys.executable, "-m", "tuner", "recommend", *flags, "-o", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        return {"wall_s": round(wall, 1), "error": proc.stderr.strip()[-400:]}
    ev = load_profile(out).evidence
    pruned = sum(1 for line in proc.stderr.splitlines() if "pruned after one repeat" in line)
    return {
        "wall_s": round(wall, 1),
        "verdict": ev.get("verdict"),
        "trials": ev.get("trials"),
        "measurements": ev.get("measurements"),
        "pruned": pruned,
        "stop_reason": ev.get("stop_reason"),
        "duration_s": ev.get("duration_s"),
        "repeats": ev.get("repeats"),
    }


def child(argv: list[str]) -> int:
    """One `tuner recommend ARGV` against a fresh Debian 12 stock namespace (see --stock)."""
    from regenerate_profiles import stock_target

    from tuner.cli import build_parser
    from tuner.cli.recommend import _config, _ProgressView, notify
    from tuner.cli.workload_args import path_from_args, workload_from_args
    from tuner.logs import configure
    from tuner.profiles import save_profile
    from tuner.search import recommend
    from tuner.search.objective import parse_objective

    args = build_parser().parse_args(["recommend", *argv])
    configure(level=os.environ.get("TUNER_LOG_LEVEL", "warning"))
    workload, path, config = workload_from_args(args), path_from_args(args, search=True), _config(args)
    ns = f"tuner-time-{os.getpid()}"
    try:
        target = stock_target(ns)
        if target is None:
            return 1
        objective = parse_objective(config.objective, workload.kind).name.split(":")[0]
        view = _ProgressView(objective)
        try:
            rec = recommend(workload, path, config, view, target=target, notify=notify)
        finally:
            view.close()
        save_profile(rec.profile, FsPath(args.output))
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stock", action="store_true", help="from a Debian 12 stock namespace (see above)")
    ap.add_argument("--kinds", help="comma-separated: " + ",".join(SCENARIOS))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "recommend_time"))
    args = ap.parse_args()
    names = args.kinds.split(",") if args.kinds else list(SCENARIOS)
    if args.stock and os.geteuid() != 0:
        print("--stock needs root (network namespaces)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "runs": args.runs,
        "baseline": "Debian 12 stock namespace" if args.stock else "this host",
        "scenarios": {},
    }
    tmp = FsPath(tempfile.mkdtemp(prefix="tuner-time-"))
    for name in names:
        runs = []
        for i in range(args.runs):
            r = run(SCENARIOS[name], tmp / f"{name}-{i}.toml", stock=args.stock)
            r["load"] = os.getloadavg()[0]
            print(name, json.dumps(r), file=sys.stderr, flush=True)
            runs.append(r)
        walls = [r["wall_s"] for r in runs if "error" not in r]  # a failed run's time is not a search's
        results["scenarios"][name] = {
            "flags": SCENARIOS[name],
            "median_wall_s": statistics.median(walls) if walls else None,
            "failed_runs": len(runs) - len(walls),
            "runs": runs,
        }
        _write(results, FsPath(args.out))
    results["load_after"] = os.getloadavg()
    _write(results, FsPath(args.out))
    print(FsPath(args.out).with_suffix(".md").read_text())
    return 0


def _outcome(r: dict[str, Any]) -> str:
    if "error" in r:
        lines = [x for x in r["error"].splitlines() if "error:" in x] or r["error"].splitlines()[-1:]
        return "FAILED: " + (lines[-1].split("error:", 1)[-1].strip() if lines else "?")
    return str(r.get("verdict"))


def _write(results: dict[str, Any], out: FsPath) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    lines = [
        "# `tuner recommend KIND` wall time (default budget)",
        "",
        f"baseline: {results.get('baseline', 'this host')}; load average before: {results['load_before']}; "
        f"runs per kind: {results['runs']}",
        "",
        "| kind | command | median wall s (successful runs) | per run (s) | trials / pruned / measurements | verdicts |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in results["scenarios"].items():
        runs = s["runs"]
        lines.append(
            f"| {name} | `tuner recommend {' '.join(s['flags'])}` | {s['median_wall_s']} | "
            f"{[r['wall_s'] for r in runs]} | "
            f"{[(r.get('trials'), r.get('pruned'), r.get('measurements')) for r in runs]} | "
            f"{'; '.join(_outcome(r) for r in runs)} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
