"""Does a long-fat-path search from stock buffers recommend buffers the path needs, and do they fill it?

    sudo .venv/bin/python bench/lfn_recommend.py [--runs 3] [--rtt 200ms] [--rate 400mbit]
                                         [--out bench/results/lfn_recommend]

Runs `tuner recommend bulk --rtt RTT --rate RATE --netns NS` as a user does (default budget and probe
settings) against a namespace this script creates with Debian 12's stock values (tcp_rmem max 6 MiB,
tcp_wmem max 4 MiB, cubic: bench/regenerate_profiles.py), ``--runs`` times, and reports per run: the
recommended tcp_rmem / tcp_wmem maxima against the path's bandwidth-delay product, the confirmed goodput
of the recommendation (the profile's evidence) against the rate, the verdict and the wall time.

Targets (issue 11): buffers of at least 2x BDP, confirmed goodput at least 90% of the cap. The namespace
is removed at the end, whatever happens.
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

from regenerate_profiles import DEBIAN12_NETNS, make_target_namespace  # noqa: E402

from tuner.profiles import load_profile  # noqa: E402
from tuner.units import format_size, parse_duration, parse_rate  # noqa: E402

STOCK_RMEM_MAX = int(DEBIAN12_NETNS["net.ipv4.tcp_rmem"].split()[2])
STOCK_WMEM_MAX = int(DEBIAN12_NETNS["net.ipv4.tcp_wmem"].split()[2])


def run_once(ns: str, rtt: str, rate: str, out: FsPath) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tuner", "recommend", "bulk", "--rtt", rtt, "--rate", rate]
    cmd += ["--netns", ns, "-o", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0 or not out.exists():
        return {"wall_s": round(wall, 1), "error": (proc.stderr or proc.stdout).strip()[-600:]}
    profile = load_profile(out)
    ev = profile.evidence
    rmem = profile.sysctl.get("net.ipv4.tcp_rmem")
    wmem = profile.sysctl.get("net.ipv4.tcp_wmem")
    rec = ev.get("recommended", {}).get("metrics", {}).get("goodput_mbps", {})
    base = ev.get("baseline", {}).get("metrics", {}).get("goodput_mbps", {})
    return {
        "wall_s": round(wall, 1),
        "verdict": ev.get("verdict"),
        "significant": ev.get("significant"),
        "tcp_rmem_max": rmem[2] if isinstance(rmem, tuple) else None,
        "tcp_wmem_max": wmem[2] if isinstance(wmem, tuple) else None,
        "socket": dict(profile.socket),
        "goodput_mbps": rec.get("median"),
        "baseline_goodput_mbps": base.get("median"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rtt", default="200ms")
    ap.add_argument("--rate", default="400mbit")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "lfn_recommend"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("lfn_recommend.py needs root (network namespaces)", file=sys.stderr)
        return 2
    rtt_s, rate_bps = parse_duration(args.rtt), parse_rate(args.rate)
    bdp = rate_bps * rtt_s / 8
    ns = f"tuner-lfn-{os.getpid()}"
    runs: list[dict[str, Any]] = []
    load0 = os.getloadavg()
    try:
        refused = make_target_namespace(ns)
        with tempfile.TemporaryDirectory(prefix="tuner-lfn-") as tmp:
            for i in range(args.runs):
                r = run_once(ns, args.rtt, args.rate, FsPath(tmp) / f"run-{i}.toml")
                runs.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    out = {
        "rtt": args.rtt,
        "rate": args.rate,
        "bdp_bytes": bdp,
        "refused_in_namespace": refused,
        "load": [load0, os.getloadavg()],
        "runs": runs,
    }
    path = FsPath(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str))
    path.with_suffix(".md").write_text(_markdown(out, rate_bps))
    print(path.with_suffix(".md").read_text())
    return 0


def _markdown(out: dict[str, Any], rate_bps: float) -> str:
    bdp = out["bdp_bytes"]
    lines = [
        f"# `tuner recommend bulk --rtt {out['rtt']} --rate {out['rate']}` from Debian 12 stock buffers",
        "",
        f"Command: `sudo .venv/bin/python bench/lfn_recommend.py --runs {len(out['runs'])} --rtt {out['rtt']} "
        f"--rate {out['rate']}`; load average before {out['load'][0][0]:.2f}, after {out['load'][1][0]:.2f}; "
        f"BDP {format_size(bdp)}; stock values the namespace refused (congestion control: set per socket "
        f"instead): {', '.join(out['refused_in_namespace']) or 'none'}. Targets: both buffers >= 2x BDP "
        "(a side the profile leaves alone counts as its stock value), confirmed goodput >= 90% of the cap.",
        "",
        "| run | tcp_rmem max | x BDP | tcp_wmem max | x BDP | socket options | confirmed goodput | of cap | "
        "baseline goodput | significant | wall s | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cap = rate_bps / 1e6
    for i, r in enumerate(out["runs"]):
        if "error" in r:
            lines.append(f"| {i} | error: {r['error'][:200]} | | | | | | | | | {r['wall_s']} |")
            continue

        def buf(v: int | None) -> tuple[str, str]:
            return (format_size(v), f"{v / bdp:.1f}") if v else ("unchanged", "-")

        rm, rx = buf(r["tcp_rmem_max"])
        wm, wx = buf(r["tcp_wmem_max"])
        g, b = r["goodput_mbps"], r["baseline_goodput_mbps"]
        lines.append(
            f"| {i} | {rm} | {rx} | {wm} | {wx} | {r['socket'] or '-'} | "
            f"{_mbit(g)} | {f'{g / cap:.0%}' if g is not None else '-'} | {_mbit(b)} | "
            f"{r['significant']} | {r['wall_s']} | {'yes' if _met(r, bdp, cap) else 'NO'} |"
        )
    ok = [r for r in out["runs"] if "error" not in r and r["goodput_mbps"] is not None]
    if ok:
        lines += [
            "",
            f"median confirmed goodput {statistics.median(r['goodput_mbps'] for r in ok) / cap:.0%} of the cap; "
            f"runs meeting both targets: {sum(_met(r, bdp, cap) for r in ok)} of {len(out['runs'])}",
        ]
    return "\n".join(lines) + "\n"


def _mbit(v: float | None) -> str:
    return f"{v:.1f} Mbit/s" if v is not None else "-"


def _met(r: dict[str, Any], bdp: float, cap_mbit: float) -> bool:
    """Both buffers >= 2x BDP (a side left alone keeps the stock maximum) and goodput >= 90% of the cap."""
    rmem = r["tcp_rmem_max"] or STOCK_RMEM_MAX
    wmem = r["tcp_wmem_max"] or STOCK_WMEM_MAX
    g = r["goodput_mbps"]
    return rmem >= 2 * bdp and wmem >= 2 * bdp and g is not None and g >= 0.9 * cap_mbit


if __name__ == "__main__":
    sys.exit(main())
