"""A/A calibration and power of the decision that turns measurements into claims.

    sudo .venv/bin/python bench/calibrate.py [--comparisons 40] [--scenarios rr,bulk,...] [--workers 1]
                                    [--out bench/results/calibration]

Every comparison goes through the real decision code: a :class:`tuner.search.study.Study` whose
space holds one candidate, with the real probe in one sandbox per scenario (per comparison with
``--workers``), the kind's default probe
settings, the confirmation's top-up to 5 repeats per side, its adaptive rounds and its verdict.

- A/A: the "candidate" is measured with exactly the baseline's settings (the study does not know).
  Any "significant" verdict is a false positive; the goal is a rate of at most 5%.
- Power: the candidate is a setting with a known, real effect, and the goal is "significant" in at
  least 95% of the comparisons:
  * nagle: rr with split writes (write-write-read), baseline Nagle on, candidate TCP_NODELAY on;
  * rcvbuf: bulk over a long path (50 ms, 100 Mbit/s), baseline a fixed 64 KiB receive buffer
    (SO_RCVBUF=65536), candidate the default (autotuned) buffer.

Results go to ``--out`` (.json and .md), with the machine's load average: the machine's other work is
noise the decision has to live with.

``--workers N`` runs N comparisons at once, each in its own sandbox: for keepalive, whose probe waits
on the kernel's timers (a comparison takes minutes and the CPU idles); a CPU-bound scenario's
comparisons would disturb each other and should keep the default of 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path as FsPath
from typing import Any

sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from tuner.kinds import DEFAULT_WORKLOADS, spec
from tuner.knobs import Value
from tuner.logs import configure
from tuner.probe import run_probe
from tuner.probe.measurement import Measurement
from tuner.probe.target import read_target
from tuner.sandbox import Sandbox
from tuner.search.objective import default_objective
from tuner.search.space import Dimension, Space
from tuner.search.stats import MIN_REPEATS
from tuner.search.study import SearchConfig, Study
from tuner.workload import NetworkPath, Workload, WorkloadKind, WritePattern

K = WorkloadKind
LONG = NetworkPath(rtt=0.05, rate_bps=100e6)
_KEEPALIVE_ON: dict[str, Value] = {
    "SO_KEEPALIVE": True,
    "TCP_KEEPIDLE": 2,
    "TCP_KEEPINTVL": 1,
    "TCP_KEEPCNT": 4,
}

# name -> (workload, path, baseline arm's settings, candidate arm's settings, what is expected)
SCENARIOS: dict[str, tuple[Workload, NetworkPath, dict[str, Value], dict[str, Value], str]] = {
    "rr": (DEFAULT_WORKLOADS[K.RR], NetworkPath(), {}, {}, "A/A"),
    "bulk": (DEFAULT_WORKLOADS[K.BULK], LONG, {}, {}, "A/A"),
    # lighter than the defaults (2000 connects from 256 threads; 50k datagrams/s), which a 2-core machine
    # shared with other work cannot generate: most runs would be invalid and no comparison judged
    "burst": (
        DEFAULT_WORKLOADS[K.BURST].with_(burst_connections=600, burst_threads=64),
        NetworkPath(),
        {},
        {},
        "A/A",
    ),
    # the default workload (bursts a buffer can absorb: what a udp search tunes); an overload (offered
    # above the reader's capacity) makes no claim at all (tuner.probe.udp), so it would calibrate nothing
    "udp": (DEFAULT_WORKLOADS[K.UDP], NetworkPath(), {}, {}, "A/A"),
    # over the kind's default 1% loss path, as `tuner recommend keepalive` measures: the defaults (keepalive
    # off: every detection is the window's lower bound) and a setting that detects (a measured spread)
    "keepalive": (
        DEFAULT_WORKLOADS[K.KEEPALIVE],
        NetworkPath(loss=spec(K.KEEPALIVE).default_loss),
        {},
        {},
        "A/A",
    ),
    "keepalive-on": (
        DEFAULT_WORKLOADS[K.KEEPALIVE],
        NetworkPath(loss=spec(K.KEEPALIVE).default_loss),
        _KEEPALIVE_ON,
        _KEEPALIVE_ON,
        "A/A",
    ),
    "memory": (DEFAULT_WORKLOADS[K.MEMORY], NetworkPath(), {}, {}, "A/A"),
    "nagle": (
        DEFAULT_WORKLOADS[K.RR].with_(write_pattern=WritePattern.SPLIT),
        NetworkPath(),
        {},
        {"TCP_NODELAY": True},
        "effect",
    ),
    "rcvbuf": (DEFAULT_WORKLOADS[K.BULK], LONG, {"SO_RCVBUF": 65536}, {}, "effect"),
}


class _OneCandidate:
    """A sampler that proposes the space's one non-baseline point, then nothing."""

    name = "one"

    def __init__(self) -> None:
        self.asked = False

    def ask(self) -> tuple[int, ...] | None:
        if self.asked:
            return None
        self.asked = True
        return (1,)

    def tell(self, point: tuple[int, ...], loss: float) -> None:
        pass


def _space(kind: WorkloadKind) -> Space:
    """One flag, off at the baseline: the study sees "baseline" and "candidate"; the measure decides
    what each of them really runs."""
    return Space(kind, (Dimension("TCP_NODELAY", (False, True), True, None),), {}, None)


def _compare(
    sb: Sandbox,
    target: Any,
    workload: Workload,
    path: NetworkPath,
    arm_a: Mapping[str, Value],
    arm_b: Mapping[str, Value],
    seed: int,
) -> dict[str, Any]:
    repeats, duration = spec(workload.kind).repeats, spec(workload.kind).duration

    def measure(assignment: Mapping[str, Value]) -> Measurement:
        settings = arm_b if assignment else arm_a
        m = run_probe(workload, path, settings, repeats=repeats, duration=duration, sandbox=sb, target=target)
        return m

    config = SearchConfig(budget=1, seed=seed, simplify=False, confirm=1)
    study = Study(
        _space(workload.kind),
        default_objective(workload.kind),
        _OneCandidate(),
        measure,  # type: ignore[arg-type]
        config=config,
    )
    t0 = time.monotonic()
    result = study.run()
    iv = result.verdict.interval
    return {
        "significant": result.verdict.significant,
        "gain": iv.gain,
        "lo": iv.lo,
        "hi": iv.hi,
        "p_value": iv.p_value,
        "confidence": iv.confidence,
        "n_baseline": iv.n_baseline,
        "n_candidate": iv.n_candidate,
        "verdict": result.verdict.text,
        "seconds": round(time.monotonic() - t0, 1),
        "failed_trials": result.failed_trials,
    }


def _target_sandbox(path: NetworkPath, target: Any) -> Sandbox:
    """A sandbox over ``path`` whose namespaces start from the target's live values (the baseline)."""
    return Sandbox(path, client_sysctls=target.sandbox_sysctls(), server_sysctls=target.sandbox_sysctls())


def _worker_init() -> None:
    """A worker leaves Ctrl-C to the parent (which cancels what is queued) and turns SIGTERM into an
    exception, so that its sandbox is removed on the way out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    configure(level="warning")


def _compare_in_own_sandbox(name: str, seed: int) -> dict[str, Any]:
    """One comparison of scenario ``name`` in a sandbox of its own (a worker of ``--workers``)."""
    workload, path, arm_a, arm_b, _expect = SCENARIOS[name]
    try:
        target = read_target()
        with _target_sandbox(path, target) as sb:
            return {"seed": seed, **_compare(sb, target, workload, path, arm_a, arm_b, seed=seed)}
    except Exception as exc:  # noqa: BLE001 - one failed comparison is reported, the run goes on
        return {"seed": seed, "error": f"{type(exc).__name__}: {exc}"}


def run_scenario(name: str, comparisons: int, checkpoint: Any = None, workers: int = 1) -> dict[str, Any]:
    workload, path, arm_a, arm_b, _expect = SCENARIOS[name]
    rows: list[dict[str, Any]] = []

    def done_one(row: dict[str, Any]) -> None:
        rows.append(row)
        done = [r for r in rows if "error" not in r]
        print(
            f"{name}: {len(rows)}/{comparisons} significant {sum(r['significant'] for r in done)} of {len(done)}",
            file=sys.stderr,
            flush=True,
        )
        if checkpoint is not None:
            checkpoint(_summary(name, rows))

    if workers > 1:
        pool = ProcessPoolExecutor(workers, initializer=_worker_init)
        try:
            futures = {pool.submit(_compare_in_own_sandbox, name, i): i for i in range(comparisons)}
            for f in as_completed(futures):
                try:
                    done_one(f.result())
                except Exception as exc:  # noqa: BLE001 - a broken worker is one failed comparison
                    done_one({"seed": futures[f], "error": f"{type(exc).__name__}: {exc}"})
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C: what is queued is not started
        return _summary(name, rows)
    target = read_target()
    with _target_sandbox(path, target) as sb:
        for i in range(comparisons):
            try:
                row = {"seed": i, **_compare(sb, target, workload, path, arm_a, arm_b, seed=i)}
            except Exception as exc:  # noqa: BLE001 - one failed comparison is reported, the run goes on
                row = {"seed": i, "error": f"{type(exc).__name__}: {exc}"}
            done_one(row)
    return _summary(name, rows)


def _summary(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    workload, path, arm_a, arm_b, expect = SCENARIOS[name]
    done = [r for r in rows if "error" not in r]
    # judged: both arms reached the minimum samples; the others ended without a verdict on the gain
    # (the baseline or the candidate was invalid under the machine's load), so they count for neither rate
    judged = [r for r in done if min(r["n_baseline"], r["n_candidate"]) >= MIN_REPEATS]
    rate = sum(r["significant"] for r in judged) / len(judged) if judged else float("nan")
    return {
        "scenario": name,
        "kind": workload.kind.value,
        "path": path.describe(),
        "expect": expect,
        "baseline_arm": arm_a,
        "candidate_arm": arm_b,
        "comparisons": len(judged),
        "errors": len(rows) - len(judged),
        "significant_rate": rate,
        "goal": "<= 0.05" if expect == "A/A" else ">= 0.95",
        "met": (rate <= 0.05) if expect == "A/A" else (rate >= 0.95),
        "probe": {
            "repeats": spec(workload.kind).repeats,
            "duration_s": spec(workload.kind).duration,
        },
        "rows": rows,
    }


def _markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# A/A calibration and power of the claim decision",
        "",
        f"Command: `{meta['command']}`",
        "",
        "comparisons = judged ones (both arms reached 5 samples); + unjudged = no verdict on the gain "
        "(a run failed or was invalid under the machine's load, or the comparison raised); "
        "significant = rate of significant verdicts among the judged ones.",
        "",
        f"Machine: {meta['cores']} cores, load average at start {meta['load_start']}, at end {meta['load_end']}; "
        f"minimum {MIN_REPEATS} repeats per side; confidence per look as in the verdicts.",
        "",
        "| scenario | kind | path | expected | comparisons | significant | goal | met | median s/comparison |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        secs = sorted(x["seconds"] for x in r["rows"] if "seconds" in x)
        med = secs[len(secs) // 2] if secs else float("nan")
        lines.append(
            f"| {r['scenario']} | {r['kind']} | {r['path']} | {r['expect']} | {r['comparisons']}"
            f"{' (+' + str(r['errors']) + ' unjudged)' if r['errors'] else ''} | "
            f"{r['significant_rate']:.1%} | {r['goal']} | {'yes' if r['met'] else 'NO'} | {med:g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comparisons", type=int, default=40)
    p.add_argument(
        "--scenarios",
        default="rr,bulk,burst,udp,nagle,rcvbuf",
        help=f"comma-separated, of: {', '.join(SCENARIOS)}",
    )
    p.add_argument("--out", default="bench/results/calibration")
    p.add_argument(
        "--workers", type=int, default=1, help="comparisons run at once, each in its own sandbox (keepalive)"
    )
    p.add_argument(
        "--summarize",
        nargs="+",
        metavar="JSON",
        help="only rebuild the .md tables of finished (or interrupted) runs from their .json",
    )
    args = p.parse_args(argv)
    if args.summarize:
        for file in map(FsPath, args.summarize):
            data = json.loads(file.read_text())
            results = [_summary(r["scenario"], r["rows"]) for r in data["results"]]
            file.write_text(json.dumps({"meta": data["meta"], "results": results}, indent=2, default=str))
            file.with_suffix(".md").write_text(_markdown(results, data["meta"]))
            print(_markdown(results, data["meta"]))
        return 0
    if os.geteuid() != 0:
        print("calibrate.py needs root (network namespaces)", file=sys.stderr)
        return 2
    configure(level="warning")
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    meta = {
        "command": "sudo .venv/bin/python bench/calibrate.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "cores": os.cpu_count(),
        "load_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = FsPath(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []

    def write(partial: dict[str, Any] | None = None) -> None:
        """After every comparison: the finished scenarios and the one under way."""
        meta["load_end"] = os.getloadavg()
        shown = results + ([partial] if partial is not None else [])
        out.with_suffix(".json").write_text(
            json.dumps({"meta": meta, "results": shown}, indent=2, default=str)
        )
        out.with_suffix(".md").write_text(_markdown(shown, meta))

    for name in names:
        results.append(run_scenario(name, args.comparisons, write, args.workers))
        write()
    print(_markdown(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
