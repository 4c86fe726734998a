"""How good are `tuner recommend`'s settings, how fast does it find them, and how long does it take?

    sudo .venv/bin/python bench/search_quality.py [--quick] [--kinds rr,burst,...] [--seeds 10]
                                         [--profiles-dir DIR] [--out bench/results/search_quality]

Per scenario (a workload kind on a representative path), in one run:

1. Wall time: `tuner recommend` (the CLI, default budget and probe settings) is run and timed; its
   profile is the *recommended* setting (``--profiles-dir`` keeps those profiles).
2. Grid: every distinct setting of the search space is measured once, in one sandbox (the exhaustive
   grid); its best is the *grid optimum*.
3. Side by side: kernel defaults, the static expert profiles people copy (tuned's network-latency and
   network-throughput, ESnet's long-fat-network host tuning), the grid optimum and the recommendation
   are measured again in interleaved rounds in the same sandbox, and compared on the kind's objective.
4. Sample efficiency: the grid's recorded measurements are *replayed* (no new measurements) to skopt
   and random search over ``--seeds`` seeds: trials until the best score found is within 5% of the
   grid optimum (95% of its score), median over the seeds.

Static profiles are translated into what a sandbox can reproduce: tuned's busy_read/busy_poll and
udp_mem are not catalogue knobs that a probe can emulate, so they are left out (said in the output).
Results go to ``--out`` as .json and .md. Other work on the machine shows up as noise and as invalid
runs; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path as FsPath
from typing import Any

sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from tuner.kinds import DEFAULT_WORKLOADS
from tuner.knobs import KernelFacts, Value
from tuner.logs import configure
from tuner.probe import run_probe
from tuner.probe.measurement import Measurement
from tuner.profiles import load_profile
from tuner.sandbox import Sandbox
from tuner.search.objective import Goal, Score, default_objective, gain
from tuner.search.recommend import live_baseline, probe_settings
from tuner.search.samplers import make_sampler
from tuner.search.space import assignment_key, build_space
from tuner.search.study import DEFAULT_BUDGET, SearchConfig, Study, TrialRole
from tuner.workload import NetworkPath, Workload, WorkloadKind, WritePattern

K = WorkloadKind
MiB = 1 << 20
REPO = FsPath(__file__).resolve().parents[1]

# name -> (workload, path, CLI flags for the same, knobs added, knobs removed)
SCENARIOS: dict[str, tuple[Workload, NetworkPath, list[str], tuple[str, ...], tuple[str, ...]]] = {
    "rr": (
        DEFAULT_WORKLOADS[K.RR].with_(write_pattern=WritePattern.SPLIT),
        NetworkPath(),
        ["rr", "--write-pattern", "split"],
        (),
        (),
    ),
    "burst": (
        DEFAULT_WORKLOADS[K.BURST].with_(burst_connections=600, burst_threads=64),
        NetworkPath(),
        ["burst", "--burst-connections", "600", "--burst-threads", "64"],
        (),
        (),
    ),
    "bulk": (
        DEFAULT_WORKLOADS[K.BULK],
        NetworkPath(rtt=0.3, rate_bps=100e6),
        ["bulk", "--rtt", "300ms", "--rate", "100mbit"],
        (),
        (),
    ),
    "lossy": (
        DEFAULT_WORKLOADS[K.BULK],
        NetworkPath(rtt=0.05, rate_bps=100e6, loss=0.01),
        [
            "bulk",
            "--rtt",
            "50ms",
            "--rate",
            "100mbit",
            "--loss",
            "1%",
            "--knob",
            "TCP_CONGESTION",
            "--no-knob",
            "net.ipv4.tcp_congestion_control",
            "--no-knob",
            "net.ipv4.tcp_slow_start_after_idle",
        ],
        ("TCP_CONGESTION",),
        ("net.ipv4.tcp_congestion_control", "net.ipv4.tcp_slow_start_after_idle"),
    ),
    "udp": (DEFAULT_WORKLOADS[K.UDP], NetworkPath(), ["udp"], (), ()),
    "keepalive": (DEFAULT_WORKLOADS[K.KEEPALIVE], NetworkPath(), ["keepalive"], (), ()),
}

# The name each scenario's recommended profile gets (the shipped profiles in profiles/).
PROFILE_NAMES = {
    "rr": "low-latency-rr",
    "burst": "connection-burst",
    "bulk": "bulk-long-fat-path",
    "lossy": "lossy-path",
    "udp": "udp-ingest",
    "keepalive": "dead-peer-detection",
}

# What people copy today, as far as a sandbox can reproduce it.
STATIC: dict[str, dict[str, Value]] = {
    "kernel defaults": {},
    # tuned network-latency: tcp_fastopen=3 (+ busy_read/busy_poll=50, not emulable: left out)
    "tuned network-latency": {"net.ipv4.tcp_fastopen": 3},
    # tuned network-throughput: tcp_rmem/tcp_wmem max 16 MiB (+ udp_mem, host-wide: left out)
    "tuned network-throughput": {
        "net.ipv4.tcp_rmem": (4096, 87380, 16 * MiB),
        "net.ipv4.tcp_wmem": (4096, 16384, 16 * MiB),
    },
    # ESnet host tuning for long fat networks
    "ESnet long fat network": {
        "net.core.rmem_max": 64 * MiB,
        "net.core.wmem_max": 64 * MiB,
        "net.ipv4.tcp_rmem": (4096, 87380, 32 * MiB),
        "net.ipv4.tcp_wmem": (4096, 65536, 32 * MiB),
        "net.ipv4.tcp_mtu_probing": 1,
    },
}


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}"


def run_cli(name: str, flags: list[str], out: FsPath, quick: bool) -> dict[str, Any]:
    """`tuner recommend` as a user runs it (default budget), timed; returns its profile."""
    extra = ["--budget", "4", "--repeats", "1", "--duration", "0.3"] if quick else []
    cmd = [sys.executable, "-m", "tuner", "recommend", *flags, *extra, "--name", name, "-o", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        return {"wall_s": wall, "error": proc.stderr.strip()[-500:], "assignment": None}
    profile = load_profile(out)
    return {
        "wall_s": wall,
        "assignment": profile.assignment,
        "verdict": profile.evidence.get("verdict"),
        "trials": profile.evidence.get("trials"),
        "stdout": proc.stdout,
    }


def measure_grid(space, measure, objective) -> dict[str, dict[str, Any]]:
    grid: dict[str, dict[str, Any]] = {}
    base = measure({})
    grid[assignment_key({})] = {"assignment": {}, "m": base}
    for point in space.points():
        try:
            cand = space.candidate(point)
        except Exception:  # noqa: BLE001 - a point no repair makes valid is not a setting
            continue
        if cand.key in grid:
            continue
        grid[cand.key] = {"assignment": dict(cand.assignment), "m": measure(cand.assignment)}
        print(f"  grid {len(grid)}/{space.size}", file=sys.stderr, end="\r", flush=True)
    print(file=sys.stderr)
    for entry in grid.values():
        m: Measurement = entry["m"]
        entry["score"] = objective.score(m, base) if m.usable else None
    return grid


def _best(grid: dict[str, dict[str, Any]]) -> tuple[str, Score]:
    usable = [(k, e["score"]) for k, e in grid.items() if e["score"] is not None and e["score"].feasible]
    return min(usable, key=lambda ks: ks[1].loss)


def side_by_side(
    arms: dict[str, dict[str, Value]], measure, objective, rounds: int
) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[float]] = {n: [] for n in arms}
    invalid: dict[str, int] = {n: 0 for n in arms}
    base_m = None
    for _ in range(rounds):
        for name, assignment in arms.items():
            m = measure(assignment)
            if not m.usable:
                invalid[name] += 1
                continue
            if name == "kernel defaults":
                base_m = m
            samples[name].extend(objective.score(m, base_m).samples)
    out = {}
    for name in arms:
        xs = samples[name]
        out[name] = {
            "score": statistics.median(xs) if xs else math.nan,
            "n": len(xs),
            "invalid_runs": invalid[name],
            "assignment": {k: list(v) if isinstance(v, tuple) else v for k, v in arms[name].items()},
        }
    return out


def trials_to_95(space, grid, objective, sampler: str, seed: int, cap: int) -> int | None:
    """Replay: search trials until the best score is within 95% of the grid optimum (None: not within cap)."""
    return replay_search(space, grid, objective, sampler, seed, cap)[0]


def replay_search(
    space, grid, objective, sampler: str, seed: int, cap: int, budget: int = DEFAULT_BUDGET
) -> tuple[int | None, float]:
    """Replay one search over the measured grid: (trials until the best found is within 95% of the grid
    optimum, None when not within ``cap``; quality of the best found after ``budget`` trials: its grid
    score over the optimum's, as "times as good", 1.0 at the optimum). The first ``budget`` trials of a
    run capped at ``cap`` are those of a run with that budget (same seed, no early stop)."""
    _, opt = _best(grid)

    def quality(score: Score | None) -> float:
        if score is None or not score.feasible or not score.value:
            return 0.0
        q = score.value / opt.value if opt.direction is Goal.MAX else opt.value / score.value
        return min(1.0, q)

    def replay(assignment):
        return grid[assignment_key(assignment)]["m"]

    def good(score: Score) -> bool:
        if score is None or not score.feasible:
            return False
        if opt.direction is Goal.MIN:
            return score.value <= opt.value / 0.95
        return score.value >= 0.95 * opt.value

    config = SearchConfig(budget=cap, sampler=sampler, seed=seed, confirm=0, simplify=False, prune=None)
    study = Study(
        space, objective, make_sampler(sampler, space, seed=seed, budget=budget), replay, config=config
    )
    result = study.run()
    base = grid[assignment_key({})]["score"]
    to95: int | None = 0 if good(base) else None
    best, at_budget, n = base, None, 0
    for t in result.trials:
        if t.role is not TrialRole.SEARCH or t.state.value == "rejected":
            continue
        n += 1
        if (
            t.usable
            and t.score is not None
            and t.score.feasible
            and (best is None or t.score.loss < best.loss)
        ):
            best = t.score
        if to95 is None and t.usable and good(t.score):
            to95 = n
        if n == budget:
            at_budget = quality(best)
    return to95, quality(best) if at_budget is None else at_budget


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="rr and udp only, 1 short repeat, 3 seeds")
    ap.add_argument("--kinds", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="side-by-side rounds")
    ap.add_argument("--profiles-dir", help="keep the recommended profiles here")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "search_quality"))
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="take the recommendation from the profile already in --profiles-dir instead of running "
        "`tuner recommend` again (its wall time is the one recorded in the profile)",
    )
    ap.add_argument(
        "--reuse-grid",
        metavar="JSON",
        help="side by side only: take the grid optimum and sample-efficiency figures of these "
        "scenarios from an earlier results file instead of measuring the grid again",
    )
    args = ap.parse_args()
    reused = json.loads(FsPath(args.reuse_grid).read_text())["scenarios"] if args.reuse_grid else {}
    configure("error")
    names = args.kinds.split(",") if args.kinds else (["rr", "udp"] if args.quick else list(SCENARIOS))
    seeds = 3 if args.quick else args.seeds
    facts = KernelFacts.read()
    results: dict[str, Any] = {"load_before": os.getloadavg(), "quick": args.quick, "scenarios": {}}
    tmp = FsPath(tempfile.mkdtemp(prefix="tuner-bench-"))
    for name in names:
        workload, path, flags, add, remove = SCENARIOS[name]
        print(f"== {name}: {workload.kind.value} over {path.describe()}", file=sys.stderr)
        prof_dir = FsPath(args.profiles_dir) if args.profiles_dir else tmp
        prof_file = prof_dir / f"{PROFILE_NAMES[name]}.toml"
        if args.reuse and prof_file.exists():
            prof = load_profile(prof_file)
            cli = {
                "wall_s": float(prof.evidence.get("elapsed_s", math.nan)),
                "assignment": prof.assignment,
                "verdict": prof.evidence.get("verdict"),
                "trials": prof.evidence.get("trials"),
            }
        else:
            cli = run_cli(PROFILE_NAMES[name], flags, prof_file, args.quick)
        print(
            f"  recommend: {cli['wall_s']:.1f} s, {cli.get('verdict') or cli.get('error')}", file=sys.stderr
        )
        repeats, duration = (1, 0.3) if args.quick else probe_settings(workload.kind, SearchConfig(), path)
        objective = default_objective(workload.kind)
        with Sandbox(path) as sb:
            live = live_baseline(sb)
            space = build_space(workload.kind, live, facts=facts, add=add, remove=remove, path=path)

            def measure(a, sb=sb, w=workload, p=path, repeats=repeats, duration=duration):
                return run_probe(w, p, a, repeats=repeats, duration=duration, sandbox=sb)

            t0 = time.monotonic()
            previous = reused.get(name)
            if previous is not None:  # side by side only: the grid optimum of an earlier run
                grid = {}
                optimum = {
                    k: tuple(v) if isinstance(v, list) else v
                    for k, v in previous["grid_optimum"]["assignment"].items()
                }
                best = Score(previous["grid_optimum"]["score_in_grid"], (), objective.direction)
            else:
                grid = measure_grid(space, measure, objective)
                best_key, best = _best(grid)
                optimum = grid[best_key]["assignment"]
            grid_s = time.monotonic() - t0
            arms = dict(STATIC)
            arms["grid optimum"] = optimum
            if cli.get("assignment") is not None:
                arms["recommended"] = cli["assignment"]
            sbs = side_by_side(arms, measure, objective, args.rounds)
        cap = min(space.size, 40)
        quality: dict[str, list[float]] = {}
        if grid:
            runs = {
                s: [replay_search(space, grid, objective, s, seed, cap) for seed in range(seeds)]
                for s in ("skopt", "random")
            }
            eff = {s: [r[0] for r in rs] for s, rs in runs.items()}
            quality = {s: [r[1] for r in rs] for s, rs in runs.items()}
        else:
            eff = {s: previous["trials_to_95"][s]["per_seed"] for s in ("skopt", "random")}
        base = sbs["kernel defaults"]["score"]
        for arm in sbs.values():
            arm["gain_vs_defaults"] = (
                gain(base, arm["score"], objective.direction) if math.isfinite(arm["score"]) else None
            )
        statics = [n for n in STATIC if n != "kernel defaults" and math.isfinite(sbs[n]["score"])]
        best_static = max(statics, key=lambda n: sbs[n]["gain_vs_defaults"]) if statics else None
        rec = sbs.get("recommended", {}).get("score", math.nan)
        summary = {
            "objective": objective.name,
            "space_size": space.size,
            "grid_settings": len(grid) if grid else previous["grid_settings"],
            "grid_invalid": sum(1 for e in grid.values() if e["score"] is None)
            if grid
            else previous["grid_invalid"],
            "grid_s": round(grid_s, 1) if grid else previous["grid_s"],
            "grid_reused_from": args.reuse_grid if not grid else None,
            "grid_optimum": {"assignment": sbs["grid optimum"]["assignment"], "score_in_grid": best.value},
            "side_by_side": sbs,
            "recommend_wall_s": round(cli["wall_s"], 1),
            "recommend_verdict": cli.get("verdict"),
            "recommend_error": cli.get("error"),
            "recommended_vs_grid": gain(sbs["grid optimum"]["score"], rec, objective.direction)
            if math.isfinite(rec)
            else None,
            "best_static": best_static,
            "recommended_vs_best_static": gain(sbs[best_static]["score"], rec, objective.direction)
            if best_static and math.isfinite(rec)
            else None,
            "trials_to_95": {
                s: {"per_seed": v, "median": _median_censored(v, cap), "cap": cap} for s, v in eff.items()
            },
            "quality_at_budget": {
                s: {
                    "per_seed": q,
                    "median": statistics.median(q),
                    "worst": min(q),
                    "reached_95": sum(x >= 0.95 for x in q) / len(q),
                }
                for s, q in quality.items()
                if q
            },
        }
        results["scenarios"][name] = summary
        print(
            json.dumps({k: v for k, v in summary.items() if k != "side_by_side"}, default=str),
            file=sys.stderr,
        )
        _write(results, FsPath(args.out))
    results["load_after"] = os.getloadavg()
    _write(results, FsPath(args.out))
    print(FsPath(args.out).with_suffix(".md").read_text())
    return 0


def _median_censored(values: list[int | None], cap: int) -> str:
    xs = sorted((v if v is not None else math.inf) for v in values)
    m = statistics.median(xs) if xs else math.nan
    return f">{cap}" if not math.isfinite(m) else f"{m:g}"


def _write(results: dict[str, Any], out: FsPath) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    lines = [
        "# search quality",
        "",
        f"load average before: {results['load_before']}, quick: {results['quick']}",
        "",
        "## Quality: objective score side by side (gain = times better than kernel defaults)",
        "",
    ]
    for name, s in results["scenarios"].items():
        lines.append(
            f"### {name} ({s['objective']}; space {s['space_size']} points, grid measured "
            f"{s['grid_settings']} settings in {s['grid_s']} s, {s['grid_invalid']} invalid)"
        )
        if s.get("grid_reused_from"):
            lines.append(f"(grid optimum and sample efficiency from the earlier run {s['grid_reused_from']})")
        lines.append("")
        lines.append("| setting | score | gain vs defaults | n | invalid runs |")
        lines.append("|---|---|---|---|---|")
        for arm, a in s["side_by_side"].items():
            g = a["gain_vs_defaults"]
            lines.append(
                f"| {arm} | {_fmt(a['score'])} | {_fmt(g) if g is not None else '-'} | {a['n']} | "
                f"{a['invalid_runs']} |"
            )
        lines.append("")
        rv = s["recommended_vs_grid"]
        rs = s["recommended_vs_best_static"]
        lines.append(
            f"recommended vs grid optimum: {_fmt(rv) if rv is not None else '-'}x; vs best static "
            f"({s['best_static']}): {_fmt(rs) if rs is not None else '-'}x; "
            f"`tuner recommend` wall time {s['recommend_wall_s']} s; verdict: "
            f"{s['recommend_verdict'] or s['recommend_error']}"
        )
        lines.append(
            f"recommended: `{s['side_by_side'].get('recommended', {}).get('assignment')}`; grid optimum: "
            f"`{s['grid_optimum']['assignment']}`"
        )
        eff = s["trials_to_95"]
        lines.append(
            f"trials to 95% of the grid optimum (replayed grid, median over seeds): skopt "
            f"{eff['skopt']['median']}, random {eff['random']['median']} (cap {eff['skopt']['cap']}); "
            f"per seed skopt {eff['skopt']['per_seed']}, random {eff['random']['per_seed']}"
        )
        for sampler, q in s.get("quality_at_budget", {}).items():
            lines.append(
                f"quality after the default budget ({sampler}, replayed grid): median {q['median']:.3f}, "
                f"worst {q['worst']:.3f}, seeds reaching 95%: {q['reached_95']:.0%}"
            )
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
