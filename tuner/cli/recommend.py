"""`tuner recommend`: search the knobs of a workload in a sandbox, prove the gain, write a profile.

tuner recommend rr --write-pattern split -o rr.toml
tuner recommend bulk --rtt 100ms --rate 200mbit --budget 12 --journal bulk.jsonl
tuner recommend bulk --rtt 100ms --rate 200mbit --budget 12 --journal bulk.jsonl --resume
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path as FsPath
from typing import Any, ClassVar

from tuner.cli.output import print_json, print_table, require_root
from tuner.cli.workload_args import (
    add_path_arguments,
    add_workload_arguments,
    path_from_args,
    positive_duration,
    workload_from_args,
)
from tuner.errors import EnvironmentProblem, InputError
from tuner.kinds import KINDS
from tuner.knobs import json_value
from tuner.probe.measurement import METRICS
from tuner.probe.target import read_target
from tuner.profiles import Profile, dump_profile, save_profile
from tuner.search.objective import Score, parse_objective
from tuner.search.recommend import Recommendation, metric_comparison, recommend
from tuner.search.samplers import SAMPLERS
from tuner.search.stats import MIN_REPEATS
from tuner.search.study import SearchConfig, TrialEvent, budget_defaults
from tuner.units import format_value

__all__ = ["cmd_recommend", "register", "render_recommendation"]


def _show(value: Any) -> str:
    return format_value(value, unset="(unset)")


def _num(value: float, unit: str = "") -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "inf"
    if unit == "":
        return f"{value:.4g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _score(score: Score | None) -> str:
    return "-" if score is None else _num(score.value, "x")


def _seconds(x: float) -> str:
    return f"{x:.0f} s" if x < 90 else f"{x / 60:.1f} min"


class _ProgressView:
    """The live display on stderr: the phase with its own count (trial 5/8, simplify 1/3, confirm 2/3),
    the elapsed time and an ETA, the last score against the best and the baseline, and while a
    measurement runs its elapsed time (ticking once a second on a terminal)."""

    _LABELS: ClassVar[dict[str, str]] = {
        "baseline": "baseline",
        "search": "trial",
        "simplify": "simplify",
        "confirm": "confirm",
        "confirm-ahead": "confirm, measured ahead",
    }

    def __init__(self, objective: str, *, file: Any = None) -> None:
        self.file = file or sys.stderr
        self.tty = self.file.isatty()
        self.objective = objective
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._head = ""
        self._tail = ""
        self._eta: float | None = None
        self._eta_at = 0.0
        self._running_since: float | None = None
        self._running_what = "measuring"
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self._running_since is not None:
                    self._show()

    def _show(self) -> None:
        now = time.monotonic()
        eta = ""
        if self._eta is not None:  # counts down while a measurement runs
            eta = f", ETA {_seconds(max(0.0, self._eta - (now - self._eta_at)))}"
        line = f"[{self._head}, {_seconds(now - self._start)}{eta}]" + (
            f" {self._tail}" if self._tail else ""
        )
        if self._running_since is not None:
            line += f" | {self._running_what} {time.monotonic() - self._running_since:.0f} s"
        if self.tty:
            print("\r\033[K" + line, end="", file=self.file, flush=True)
        else:
            print(line, file=self.file, flush=True)

    def __call__(self, event: TrialEvent) -> None:
        if event.phase == "done":
            return
        label = self._LABELS.get(event.phase, event.phase)
        count = f"{label} {event.phase_done}/{event.phase_total}" if event.phase != "baseline" else label
        with self._lock:
            self._head = count
            self._eta, self._eta_at = event.eta, time.monotonic()
            if event.running:
                self._running_since = time.monotonic()
                self._running_what = f"{event.message}:" if event.message else "measuring"
                if self.tty or not self._tail:
                    self._show()
                return
            self._running_since = None
            t = event.trial
            if t is None:
                return
            current = _score(t.score) if t.usable else t.state.value
            pruned = " (pruned after one repeat)" if t.pruned else ""
            self._tail = (
                f"{self.objective} {current}{pruned} (best {_score(event.best)}, "
                f"baseline {_score(event.baseline)})"
            )
            self._show()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2.0)
        if self.tty:
            print(file=self.file, flush=True)


def render_recommendation(rec: Recommendation, file=None) -> None:
    file = file or sys.stdout
    r = rec.result
    ev = rec.profile.evidence
    failed = f", {r.failed_trials} failed" if r.failed_trials else ""
    print(f"workload   {rec.workload.kind.value}", file=file)
    print(f"path       {rec.path.describe()} (backend: {rec.baseline.backend})", file=file)
    print(
        f"search     {ev['sampler']}, {r.search_trials} trials{failed} over {len(rec.space.knobs)} knobs "
        f"({rec.space.size} settings); stopped: {r.stop_reason}; {r.elapsed:.0f} s",
        file=file,
    )
    print(f"objective  {ev['objective_description']}", file=file)
    print(f"verdict    {rec.verdict.text}", file=file)
    for note in rec.baseline.notes:  # what the baseline's probe found (e.g. a reader slower than its load)
        print(f"baseline   {note}", file=file)
    print(file=file)
    rows = []
    for name, c in metric_comparison(rec.baseline, rec.best, seed=ev.get("seed", 0)).items():
        unit = METRICS[name].unit if name in METRICS else ""
        conf = f"{_num(c['gain'])}x ({_num(c['gain_lo'])}..{_num(c['gain_hi'])})" + (
            " *" if c["significant"] else ""
        )
        rows.append(
            (
                name,
                _num(c["baseline"], unit or "x"),
                _num(c["recommended"], unit or "x"),
                unit,
                _num(c["ratio"]),
                conf,
            )
        )
    print_table(("METRIC", "BASELINE", "RECOMMENDED", "UNIT", "RATIO", "GAIN (95% CI)"), rows, file=file)
    print(
        "  ratio = recommended / baseline; gain = times better; * = beyond noise at 95% confidence", file=file
    )
    print(file=file)
    if rec.assignment:
        print_table(
            ("KNOB", "BASELINE", "RECOMMENDED"),
            [(k, _show(old), _show(new)) for k, (old, new) in rec.changed.items()],
            file=file,
        )
    else:
        print("no knob changed: keep the defaults", file=file)
    if rec.profile.socket:
        print(file=file)
        print(rec.snippets.rstrip(), file=file)


def notify(text: str) -> None:
    """A message of the search to the user (what it decided on their behalf), on stderr."""
    print(f"tuner recommend: {text}", file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(
        budget=args.budget,
        time_budget=args.time,
        sampler=args.sampler,
        seed=args.seed,
        repeats=args.repeats,
        duration=args.duration,
        objective=args.objective,
        knobs=tuple(args.knob),
        no_knobs=tuple(args.no_knob),
        journal=FsPath(args.journal) if args.journal else None,
        resume=args.resume,
        name=args.name,
        max_repeats=args.max_repeats,
    )


def _save(profile: Profile, file: FsPath) -> None:
    try:
        save_profile(profile, file)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot write the profile to {file}: {exc.strerror or exc}",
            hint="check the directory exists and is writable, then run the search again "
            "(with --journal and --resume, finished trials are kept)",
        ) from None


def cmd_recommend(args: argparse.Namespace) -> int:
    if args.auto:
        return cmd_recommend_auto(args)
    if args.workload is None:
        raise InputError(
            "name a workload kind, or use --auto to observe this host",
            hint="e.g. `tuner recommend rr`; kinds: " + ", ".join(k.value for k in KINDS),
        )
    workload = workload_from_args(args)
    path = path_from_args(args, search=True)
    if path != path_from_args(args):
        notify(
            f"{workload.kind.value} over a plain link measures this machine's CPU, not the settings: "
            f"searching over {path.describe()} (give --rtt and --rate for your path)"
        )
    config = _config(args)
    if args.output and FsPath(args.output).is_dir():
        raise InputError(f"-o {args.output} is a directory", hint="name the profile file, e.g. -o rr.toml")
    if args.output and not FsPath(args.output).parent.is_dir():
        # checked before the search: a search of minutes must not end in a profile that cannot be written
        raise InputError(
            f"-o {args.output}: the directory {FsPath(args.output).parent} does not exist",
            hint="create it first, or name a file in an existing directory",
        )
    require_root("searching in sandboxes (network namespaces)")
    target = read_target(args.netns)
    view = _ProgressView(parse_objective(config.objective, workload.kind).name.split(":")[0])
    try:
        rec = recommend(
            workload,
            path,
            config,
            view,
            target=target,
            notify=notify,
        )
    except KeyboardInterrupt:
        view.close()
        if config.journal is not None:
            print(
                f"tuner recommend: the journal {config.journal} keeps every finished trial; continue with the "
                f"same command and --resume",
                file=sys.stderr,
            )
        raise
    view.close()
    if args.output:
        _save(rec.profile, FsPath(args.output))
    if args.json:
        print_json(
            {
                "verdict": rec.verdict.text,
                "significant": rec.verdict.significant,
                "assignment": {k: json_value(v) for k, v in rec.assignment.items()},
                "baseline": rec.baseline.to_dict(),
                "recommended": rec.best.to_dict(),
                "metrics": metric_comparison(rec.baseline, rec.best, seed=config.seed),
                "trials": [t.to_record() for t in rec.trials],
                "profile": dump_profile(rec.profile),
                "profile_file": args.output,
            }
        )
        return 0
    render_recommendation(rec)
    print()
    if args.output:
        print(f"profile written to {args.output} (apply it with `tuner apply {args.output}`)")
    else:
        print("write the profile with -o FILE")
    return 0


def cmd_recommend_auto(args: argparse.Namespace) -> int:
    """Observe, then search and write one profile per service with symptoms (into the -o directory)."""
    from tuner.observe import observe
    from tuner.search.auto import recommend_for_service, services_to_tune

    if args.workload is not None:
        raise InputError(
            f"--auto observes the workload; do not also name one ({args.workload})",
            hint="drop the workload kind, or drop --auto",
        )
    if args.journal or args.resume or args.name:
        raise InputError("--journal, --resume and --name apply to a single search, not to --auto")
    out_dir = FsPath(args.output or ".")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            f"-o {out_dir}: with --auto, -o names a directory for the profiles",
            hint="e.g. -o /var/lib/tuner/profiles",
        )
    seconds = args.observe
    config = _config(args)
    require_root("searching in sandboxes (network namespaces)")
    where = f"namespace {args.netns}" if args.netns else "this host"
    print(f"observing {where} for {seconds:g} s ...", file=sys.stderr, flush=True)
    obs = observe(seconds, args.netns)
    targets = services_to_tune(obs)
    if not targets:
        print(
            f"nothing needs tuning: {len(obs.services)} service(s) observed on {where} for {seconds:g} s, "
            f"none with a symptom a search can address"
        )
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    target = read_target(args.netns)  # the baseline of every search: the observed host or namespace
    written = []
    for i, svc in enumerate(targets, 1):
        symptoms = ", ".join(s.name for s in svc.symptoms)
        print(f"[{i}/{len(targets)}] {svc.key} ({svc.service_class.value}): {symptoms}", file=sys.stderr)
        view = _ProgressView(parse_objective(config.objective, svc.workload.kind).name.split(":")[0])
        try:
            rec = recommend_for_service(svc, obs, config, view, target)
        finally:
            view.close()
        file = out_dir / f"{rec.profile.name}.toml"
        _save(rec.profile, file)
        written.append((svc, rec, file))
        if not args.json:
            print(f"== {svc.key}: {symptoms}")
            render_recommendation(rec)
            print(f"profile written to {file}\n")
    if args.json:
        print_json(
            [
                {
                    "service": svc.key,
                    "verdict": rec.verdict.text,
                    "significant": rec.verdict.significant,
                    "assignment": {k: json_value(v) for k, v in rec.assignment.items()},
                    "profile_file": str(file),
                }
                for svc, rec, file in written
            ]
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    kinds = "; ".join(f"{k.value}: {', '.join(s.knobs)}" for k, s in KINDS.items())
    defaults = ", ".join(f"{k.value} {s.repeats}x{s.duration:g}s" for k, s in KINDS.items())
    p = sub.add_parser(
        "recommend",
        help="search the best settings for a workload and write a profile with evidence",
        description="Search the knobs that matter for a workload with Bayesian optimisation, measuring every "
        "candidate in a sandbox (two namespaces joined by an emulated path). The baseline is "
        "measured first; the leading candidates are measured again beside it, and the gain gets a "
        "95% confidence interval. Prints baseline vs recommended for every metric and the knobs "
        "that changed; -o writes the profile (settings, workload, path and evidence).",
        epilog=f"knobs searched by default: {kinds}. Probe repeats x duration per kind: {defaults}; over a path "
        "a bulk window is 8 round trips (0.5-2.5 s) and an rr window at least 100. "
        "Examples: tuner recommend rr --write-pattern split -o rr.toml | "
        "tuner recommend bulk --rtt 100ms --rate 200mbit --journal bulk.jsonl",
    )
    add_workload_arguments(p, kind_optional=True)
    add_path_arguments(p)
    auto = p.add_argument_group("observe the host instead of naming a workload")
    auto.add_argument(
        "--auto",
        action="store_true",
        help="observe live sockets, then search and write one profile per service with symptoms "
        "(-o names a directory, default .)",
    )
    auto.add_argument(
        "--observe",
        type=positive_duration,
        default=10.0,
        metavar="DURATION",
        help="with --auto: how long to observe (default 10s)",
    )
    auto.add_argument(
        "--netns",
        metavar="NS",
        help="the target: its live per-namespace sysctls are the baseline, copied into the sandbox "
        "(default: this host's); with --auto: observe inside this network namespace",
    )
    g = p.add_argument_group("search")
    g.add_argument(
        "--budget",
        type=int,
        metavar="N",
        help=f"search trials, not counting the baseline and the confirmation (default {budget_defaults()})",
    )
    g.add_argument(
        "--time", type=positive_duration, metavar="DURATION", help="stop searching after this long, e.g. 5m"
    )
    g.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="skopt",
        help="skopt: Bayesian optimisation (default); random; grid: every setting in turn",
    )
    g.add_argument(
        "--knob", action="append", default=[], metavar="KNOB", help="add a knob to the search (repeatable)"
    )
    g.add_argument(
        "--no-knob",
        action="append",
        default=[],
        metavar="KNOB",
        help="leave a knob out of the search (repeatable)",
    )
    g.add_argument(
        "--objective",
        metavar="METRIC[:min|max]",
        help="what to optimise (default per kind: rr latency_p99_ms, bulk goodput_mbps, burst "
        "connect_p99_ms, udp delivered_fraction, keepalive detect_s plus a cost per probe "
        "packet, memory bytes_per_conn above a throughput floor)",
    )
    g.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the sampler (default 0)")
    g.add_argument("--repeats", type=int, metavar="N", help="repeats per measurement (default per kind)")
    g.add_argument(
        "--duration",
        type=positive_duration,
        metavar="DURATION",
        help="measured seconds per repeat (default per kind)",
    )
    g.add_argument(
        "--max-repeats",
        type=int,
        default=20,
        metavar="N",
        help=f"confirmation: add side-by-side repeats while the gain is unclear, up to N per side "
        f"(default 20; a claim needs at least {MIN_REPEATS}; with --repeats below {MIN_REPEATS} "
        "nothing is added and nothing is claimed)",
    )
    g.add_argument("--journal", metavar="FILE", help="append every trial to this JSON-lines file")
    g.add_argument("--resume", action="store_true", help="continue the interrupted search in --journal")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="PROFILE", help="write the profile (TOML) to this file")
    out.add_argument("--name", metavar="NAME", help="profile name (default: from the workload and path)")
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_recommend)
