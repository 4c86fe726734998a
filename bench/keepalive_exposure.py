"""How often the keepalive probe's healthy phase catches a setting that gives up on a live peer.

Over the keepalive kind's default 1% loss path, settings with short timers (TCP_KEEPIDLE 2 s, interval 1 s)
and TCP_KEEPCNT 1..4 are measured with N idle connections per repeat, every repeat side by side in its
own sandbox (tuner.probe.side_by_side, as a search measures them). Reports per setting and N the false
kills per repeat and the share of measurements of the search's size (2 repeats) and of the confirmation's
(5) that would show at least one kill (so refuse the setting), from the repeats measured.

    sudo .venv/bin/python bench/keepalive_exposure.py [--repeats 10] [--connections 128,512]
        [--idle 2] [--interval 1] [--duration 0.5] [--workers 16] [--burners N]

``--burners N`` runs N CPU burners (``yes``, started and stopped by this script, by PID) beside the
probe, to see whether a loaded machine makes the emulated path kill live connections.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path as FsPath
from typing import Any

REPO = FsPath(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tuner.kinds import DEFAULT_WORKLOADS  # noqa: E402
from tuner.kinds import spec as kind_spec  # noqa: E402
from tuner.logs import configure  # noqa: E402
from tuner.probe.side_by_side import Request, SideBySide  # noqa: E402
from tuner.probe.target import read_target  # noqa: E402
from tuner.workload import NetworkPath, WorkloadKind  # noqa: E402

K = WorkloadKind.KEEPALIVE


def _refused_share(kills: list[float], size: int) -> float:
    """Share of the disjoint groups of ``size`` repeats that hold at least one kill."""
    groups = [kills[i : i + size] for i in range(0, len(kills) - size + 1, size)]
    return sum(1 for g in groups if sum(g) > 0) / len(groups) if groups else float("nan")


def _measure_all(args: argparse.Namespace, record: Any, path: NetworkPath, target: Any, rows: list) -> None:
    duration = args.duration or record.duration
    for n, count in itertools.product(
        [int(x) for x in args.connections.split(",")], [int(x) for x in args.counts.split(",")]
    ):
        workload = DEFAULT_WORKLOADS[K].with_(idle_connections=n)
        setting = {
            "SO_KEEPALIVE": True,
            "TCP_KEEPIDLE": args.idle,
            "TCP_KEEPINTVL": args.interval,
            "TCP_KEEPCNT": count,
        }
        t0 = time.monotonic()
        with SideBySide(workload, path, duration, target, workers=min(args.workers, args.repeats)) as pool:
            (m,) = pool.measure([Request(setting, args.repeats)])
        kills = list(m.metrics["false_kills"].samples) if "false_kills" in m.metrics else []
        probes = (
            list(m.metrics["healthy_keepalive_probes"].samples)
            if "healthy_keepalive_probes" in m.metrics
            else []
        )
        row = {
            "connections": n,
            "TCP_KEEPCNT": count,
            "valid": m.valid,
            "false_kills": kills,
            "healthy_probes_median": sorted(probes)[len(probes) // 2] if probes else None,
            "refused_by_2": _refused_share(kills, 2),
            "refused_by_5": _refused_share(kills, 5),
            "wall_s": round(time.monotonic() - t0, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--connections", default="128,512")
    ap.add_argument("--counts", default="1,2,3,4")
    ap.add_argument("--idle", type=int, default=2, help="TCP_KEEPIDLE, seconds")
    ap.add_argument("--interval", type=int, default=1, help="TCP_KEEPINTVL, seconds")
    ap.add_argument("--duration", type=float, default=None, help="the probe's duration (default: the kind's)")
    ap.add_argument("--workers", type=int, default=16, help="repeats measured at once")
    ap.add_argument("--burners", type=int, default=0, help="CPU burners beside the probe")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "keepalive_exposure"))
    args = ap.parse_args()
    configure(level="warning")
    record = kind_spec(K)
    path = NetworkPath(loss=record.default_loss)
    target = read_target()
    rows = []
    with contextlib.ExitStack() as stack:
        for _ in range(args.burners):
            burner = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
            stack.callback(burner.wait)
            stack.callback(burner.kill)
        _measure_all(args, record, path, target, rows)
    out = FsPath(args.out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# keepalive probe: false kills caught per repeat, by connections held",
        "",
        f"`sudo .venv/bin/python bench/keepalive_exposure.py {' '.join(sys.argv[1:])}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); path: 1% loss; "
        f"TCP_KEEPIDLE {args.idle}, TCP_KEEPINTVL {args.interval}; {args.burners} CPU burners beside; "
        f"up to {args.workers} repeats side by side, each in its own sandbox.",
        "",
        "| connections | TCP_KEEPCNT | false kills per repeat | keepalive probes per repeat (median) | "
        "measurements of 2 repeats refused | of 5 refused | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['connections']} | {r['TCP_KEEPCNT']} | {[int(k) for k in r['false_kills']]} | "
            f"{r['healthy_probes_median']} | {r['refused_by_2']:.0%} | {r['refused_by_5']:.0%} | {r['wall_s']} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
