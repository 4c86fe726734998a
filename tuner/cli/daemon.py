"""`tuner daemon` (run the service, or send it a request) and `tuner status` (what it sees and did)."""

from __future__ import annotations

import argparse
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.cli.output import print_json, print_table, require_root
from tuner.errors import EnvironmentProblem, StateError
from tuner.units import format_value

if TYPE_CHECKING:
    from tuner.daemon.config import DaemonConfig

__all__ = ["register"]


def _config(args: argparse.Namespace) -> DaemonConfig:
    from tuner.daemon.config import load_config

    return load_config(
        Path(args.config) if args.config else None, state_dir=Path(args.state_dir) if args.state_dir else None
    )


def _when(ts: float | None) -> str:
    if not isinstance(ts, (int, float)) or not ts or not math.isfinite(ts) or not 0 < ts < 1e11:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _release(args: argparse.Namespace) -> int:
    from tuner.daemon.control import ControlDir
    from tuner.knobs import get_knob

    knob = get_knob(args.release).name
    cfg = _config(args)
    require_root("tuner daemon --release")
    control = ControlDir(cfg.state_dir)
    control.request_release(knob)
    woke = control.wake()
    print(
        f"requested: the daemon stops treating {knob} as manually managed"
        + ("" if woke else " (the daemon is not running; it picks the request up when it starts)")
    )
    return 0


def _stage(args: argparse.Namespace) -> int:
    from tuner.daemon.control import ControlDir
    from tuner.profiles import load_profile

    cfg = _config(args)
    require_root("tuner daemon --stage")
    # validated here (refused with its file and key if bad) and trusted as `tuner apply` would trust it
    profile = load_profile(Path(args.stage), trusted_only=True)
    control = ControlDir(cfg.state_dir)
    dest = control.stage(profile)
    woke = control.wake()
    mode = cfg.mode.value
    print(
        f"staged {profile.name} as {dest}: "
        + (
            "the daemon applies it under the guard"
            if mode == "apply"
            else 'it waits there until the daemon runs in mode = "apply"'
        )
        + ("" if woke else " (the daemon is not running)")
    )
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    if args.print_default_config:
        from tuner.daemon.config import default_config_text

        print(default_config_text(), end="")
        return 0
    if args.release:
        return _release(args)
    if args.stage:
        return _stage(args)
    cfg = _config(args)
    from tuner.cli import log_level_for
    from tuner.logs import configure

    configure(log_level_for(args, cfg.log_level), json=args.log_json)
    if args.check_config:
        allow = ", ".join(sorted(cfg.apply.allow)) or "(none)"
        print(
            f"{cfg.source}: valid; mode {cfg.mode.value}, {'enabled' if cfg.enabled else 'disabled'}, "
            f"state {cfg.state_dir}, observe every {cfg.observe.interval:g} s, allow-list: {allow}"
        )
        return 0
    require_root("tuner daemon")
    from tuner.daemon.loop import Daemon

    if args.netns:
        from tuner.errors import NetnsNotFoundError
        from tuner.netns import netns_exists

        if not netns_exists(args.netns):
            raise NetnsNotFoundError(args.netns)
    daemon = Daemon(
        Path(args.config) if args.config else None,
        netns=args.netns,
        state_dir=Path(args.state_dir) if args.state_dir else None,
    )
    return daemon.run()


def _load_status(args: argparse.Namespace) -> tuple[Path, dict[str, Any], bool]:
    from tuner.daemon.control import daemon_running
    from tuner.daemon.state import STATE_FILE, read_state

    state_dir = Path(args.state_dir) if args.state_dir else _config(args).state_dir
    file = state_dir / STATE_FILE
    if not file.exists():
        raise EnvironmentProblem(
            f"no daemon state in {state_dir}: the daemon has not run with this state directory",
            hint="start it with `systemctl start tuner` (or `tuner daemon`), "
            "or point --state-dir at its directory",
        )
    try:
        state = read_state(file)
    except ValueError as exc:
        raise StateError(
            file, f"cannot be read: {exc}", hint="the daemon sets an unusable file aside when it starts"
        ) from None
    except PermissionError:
        raise EnvironmentProblem(f"cannot read {file}: permission denied", hint="run it as root") from None
    return state_dir, state.to_dict(), daemon_running(state_dir)


def _print_status(state_dir: Path, s: dict[str, Any], running: bool) -> None:
    who = f"running (pid {s['pid']})" if running else "not running"
    print(
        f"tuner daemon: {who}; mode {s['mode']}{'' if s['enabled'] else ' (disabled)'}; "
        f"config {s['config'] or '(defaults)'}; state {state_dir}"
        + (f"; netns {s['netns']}" if s.get("netns") else "")
    )
    print(f"doing: {s['activity'] if running else 'nothing (last: ' + (s['activity'] or '-') + ')'}")
    print(f"updated: {_when(s['updated'])}")
    obs = s.get("last_observation") or {}
    print()
    print(f"SEEN (last observation {_when(obs.get('at'))})")
    services = obs.get("services") or []
    if services:
        print_table(
            ("SERVICE", "PROCESS", "CLASS", "PATH", "SYMPTOMS"),
            [
                (
                    x.get("key", ""),
                    x.get("process", ""),
                    x.get("class", ""),
                    x.get("path", ""),
                    ", ".join(sy.get("name", "") for sy in x.get("symptoms", [])) or "-",
                )
                for x in services
            ],
        )
    else:
        print("  no services")
    if s.get("search"):
        a = s["search"]
        print(
            f"\nsearching {a['service']} since {_when(a['started'])}: trial {a['trial']}/{a['budget']} ({a['reason']})"
        )
    if s.get("queue"):
        print("\nQUEUED SEARCHES")
        print_table(
            ("SERVICE", "SINCE", "REASON"),
            [(q["key"], _when(q["queued_at"]), q["reason"]) for q in s["queue"]],
        )
    print("\nPROFILES WRITTEN")
    if s.get("profiles"):
        rows = []
        for p in s["profiles"]:
            summ = p.get("summary") or {}
            rows.append(
                (p["name"], p.get("service") or "-", _when(p["created"]), summ.get("gain", "-"), p["file"])
            )
        print_table(("NAME", "SERVICE", "WRITTEN", "GAIN", "FILE"), rows)
    else:
        print("  none yet")
    print("\nAPPLIED")
    if s.get("applied"):
        rows = []
        for a in s["applied"]:
            changes = (
                ", ".join(
                    f"{k} {format_value(v['old'])} -> {format_value(v['new'])}"
                    for k, v in a["changes"].items()
                )
                or "-"
            )
            rows.append(
                (_when(a["at"]), a["profile"], a["outcome"], changes, "; ".join(a.get("reasons", [])) or "-")
            )
        print_table(("WHEN", "PROFILE", "OUTCOME", "CHANGES", "WHY"), rows)
    else:
        print("  nothing" + ("" if s["mode"] == "apply" else " (recommend mode never changes the host)"))
    if s.get("guard"):
        g = s["guard"]
        print(
            f"\nguard: watching {g['profile']} until {_when(g['deadline'])} ({g['samples']} samples so far)"
        )
    print("\nMANUAL KNOBS (left alone; `tuner daemon --release KNOB` hands one back)")
    if s.get("manual"):
        print_table(
            ("KNOB", "SINCE", "DAEMON SET", "FOUND", "WRITER"),
            [
                (k, _when(m["since"]), format_value(m["expected"]), format_value(m["found"]), m["writer"])
                for k, m in s["manual"].items()
            ],
        )
    else:
        print("  none")
    if s.get("problems"):
        print("\nRECENT PROBLEMS")
        for p in s["problems"][-5:]:
            print(f"  {p}")


def cmd_status(args: argparse.Namespace) -> int:
    state_dir, state, running = _load_status(args)
    if args.prometheus:
        from tuner.daemon.metrics import render
        from tuner.daemon.state import DaemonState

        sys.stdout.write(render(DaemonState.from_dict(state)))
    elif args.json:
        print_json({"running": running, "state_dir": str(state_dir), **state})
    else:
        _print_status(state_dir, state, running)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "daemon",
        help="run the tuning service (observe, search, keep profiles current)",
        description="Run the tuning service in the foreground (systemd: tuner.service, Type=notify). It observes "
        "the host, searches better settings in sandboxes when a service appears or changes, writes "
        'profiles to its state directory and, only in mode = "apply", applies allow-listed sysctls '
        "under a guard that rolls back on regression. Every configuration key is documented in the "
        "default file (`tuner daemon --print-default-config > /etc/tuner/tuner.toml`). With --release "
        "or --stage it sends a request to the running daemon instead.",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default /etc/tuner/tuner.toml; missing: the documented defaults)",
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="state directory (overrides state_dir of the configuration)"
    )
    p.add_argument(
        "--netns",
        metavar="NS",
        help="observe and apply inside this network namespace instead of the host (for tests and containers)",
    )
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument(
        "--print-default-config",
        action="store_true",
        help="print the documented default configuration (a starting /etc/tuner/tuner.toml) and exit",
    )
    p.add_argument("--release", metavar="KNOB", help="hand a knob marked manual back to the daemon and exit")
    p.add_argument(
        "--stage", metavar="PROFILE", help='queue a profile for a guarded apply (mode = "apply") and exit'
    )
    p.set_defaults(func=cmd_daemon)

    s = sub.add_parser(
        "status",
        help="what the daemon sees, does, wrote and applied",
        description="Show what the daemon sees (services, symptoms), what it is doing, the profiles "
        "it wrote, what it applied and when, and the knobs marked manual.",
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument(
        "--prometheus",
        action="store_true",
        help="print the daemon's Prometheus metrics (text format, for node_exporter's textfile collector)",
    )
    s.add_argument(
        "--state-dir", metavar="DIR", help="the daemon's state directory (default: from the configuration)"
    )
    s.add_argument("--config", metavar="FILE", help="configuration file to take state_dir from")
    s.set_defaults(func=cmd_status)
