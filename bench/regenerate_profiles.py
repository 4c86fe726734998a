"""Regenerate every shipped profile in profiles/ with `tuner recommend` against a stock-distro baseline.

    sudo .venv/bin/python bench/regenerate_profiles.py [--only rr,burst,...] [--out profiles] [--budget 8]

The target is a network namespace this script creates and sets to the documented stock values of
Debian 12 (kernel 6.1) below; it is removed at the end, whatever happens. Each profile's
``[evidence.baseline]`` records those values and where they came from, so `tuner apply` can warn on a
host whose own values differ.

- Per-namespace values are written into the target namespace, then copied into the sandbox by
  `recommend` (see tuner/probe/target.py), like for any `--netns` target.
- Host-only values (rmem_max, wmem_max, rmem_default, wmem_default) cannot be written into a
  namespace and this script never changes the host's: they are given to the search as the target's
  values and emulated per socket (SO_RCVBUFFORCE / SO_SNDBUFFORCE), as for any target.
- A congestion control the host does not allow namespaces to select (cubic on a host whose
  tcp_allowed_congestion_control is "reno bbr") is given to every probe socket with TCP_CONGESTION;
  the evidence's source says so.

Takes tens of minutes (the default budget and probe settings of each kind, plus the confirmation).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path as FsPath

sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from tuner.kinds import DEFAULT_WORKLOADS
from tuner.knobs import Value
from tuner.logs import configure
from tuner.probe.target import CONGESTION, TargetBaseline, namespace_algorithms, read_target
from tuner.profiles import save_profile
from tuner.search import SearchConfig, recommend
from tuner.workload import NetworkPath, Workload, WorkloadKind, WritePattern

K = WorkloadKind
REPO = FsPath(__file__).resolve().parents[1]

# Debian 12 (bookworm, kernel 6.1) defaults, per network namespace.
DEBIAN12_NETNS: dict[str, str] = {
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_rmem": "4096 131072 6291456",
    "net.ipv4.tcp_wmem": "4096 16384 4194304",
    "net.ipv4.tcp_max_syn_backlog": "512",
    "net.ipv4.tcp_keepalive_time": "7200",
    "net.ipv4.tcp_keepalive_intvl": "75",
    "net.ipv4.tcp_keepalive_probes": "9",
    "net.ipv4.tcp_congestion_control": "cubic",
    "net.ipv4.tcp_notsent_lowat": "4294967295",
    "net.ipv4.tcp_slow_start_after_idle": "1",
    "net.ipv4.tcp_fastopen": "1",
    "net.ipv4.tcp_fin_timeout": "60",
    "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.tcp_mtu_probing": "0",
    "net.ipv4.ip_local_port_range": "32768 60999",
}
# Debian 12 host-wide defaults (emulated per socket, never written).
DEBIAN12_HOST: dict[str, Value] = {
    "net.core.rmem_max": 212992,
    "net.core.wmem_max": 212992,
    "net.core.rmem_default": 212992,
    "net.core.wmem_default": 212992,
}

# file name -> (workload, path, knobs added, knobs removed, the equivalent CLI flags)
PROFILES: dict[str, tuple[Workload, NetworkPath, tuple[str, ...], tuple[str, ...], str]] = {
    "low-latency-rr": (
        DEFAULT_WORKLOADS[K.RR].with_(write_pattern=WritePattern.SPLIT),
        NetworkPath(),
        (),
        (),
        "rr --write-pattern split",
    ),
    "connection-burst": (
        DEFAULT_WORKLOADS[K.BURST].with_(burst_connections=600, burst_threads=64),
        NetworkPath(),
        (),
        (),
        "burst --burst-connections 600 --burst-threads 64",
    ),
    "bulk-long-fat-path": (
        DEFAULT_WORKLOADS[K.BULK],
        NetworkPath(rtt=0.3, rate_bps=100e6),
        (),
        (),
        "bulk --rtt 300ms --rate 100mbit",
    ),
    "lossy-path": (
        DEFAULT_WORKLOADS[K.BULK],
        NetworkPath(rtt=0.05, rate_bps=100e6, loss=0.01),
        (),
        (),
        "bulk --rtt 50ms --rate 100mbit --loss 1%",
    ),
    "udp-ingest": (DEFAULT_WORKLOADS[K.UDP], NetworkPath(), (), (), "udp"),
    # healthy connections cross the same 1% loss, so a setting that kills them is measured as such
    "dead-peer-detection": (
        DEFAULT_WORKLOADS[K.KEEPALIVE],
        NetworkPath(loss=0.01),
        (),
        (),
        "keepalive --loss 1%",
    ),
}


def _ns(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def make_target_namespace(name: str) -> list[str]:
    """Create ``name`` with the Debian 12 per-namespace values; returns the values it could not take."""
    _ns("netns", "add", name)
    _ns("-n", name, "link", "set", "lo", "up")
    refused = []
    for key, value in DEBIAN12_NETNS.items():
        if key == CONGESTION and value not in namespace_algorithms():
            refused.append(key)
            continue
        proc = subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-q", "-w", f"{key}={value}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            refused.append(key)
    return refused


def stock_target(name: str) -> TargetBaseline | None:
    """Create the namespace ``name`` with Debian 12's values and return it as a search's target (host-only
    values and a congestion control the namespace refuses emulated per socket); None, with a message, when
    this kernel refuses another stock value in a namespace. The caller removes the namespace."""
    refused = make_target_namespace(name)
    cc_emulated = CONGESTION in refused
    refused = [k for k in refused if k != CONGESTION]
    if refused:
        print(
            f"this kernel refused {', '.join(refused)} in a namespace: the search would not be measured "
            "against the documented baseline",
            file=sys.stderr,
        )
        return None
    source = f"netns {name}: Debian 12 stock values (bench/regenerate_profiles.py)"
    if cc_emulated:
        source += "; cubic set per socket with TCP_CONGESTION (this host does not let a namespace select it)"
    return read_target(name).with_values({**DEBIAN12_HOST, CONGESTION: "cubic"}, source=source)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(PROFILES)}")
    p.add_argument(
        "--out", default=str(REPO / "profiles"), help="directory of the profiles (default profiles/)"
    )
    p.add_argument("--budget", type=int, default=None, help="search trials (default: recommend's default)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("regenerate_profiles.py needs root (network namespaces)", file=sys.stderr)
        return 2
    configure(level="warning")
    names = [n.strip() for n in args.only.split(",")] if args.only else list(PROFILES)
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        print(f"unknown profile(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    ns = f"tuner-stock-{os.getpid()}"
    try:
        target = stock_target(ns)
        if target is None:
            return 1
        out = FsPath(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            workload, path, add, remove, flags = PROFILES[name]
            config = SearchConfig(
                name=name, knobs=add, no_knobs=remove, **({"budget": args.budget} if args.budget else {})
            )
            t0 = time.monotonic()
            print(f"{name}: tuner recommend {flags} against {ns} ...", file=sys.stderr, flush=True)
            rec = recommend(workload, path, config, target=target)
            profile = rec.profile
            evidence = {
                **profile.evidence,
                "reproduce": f"sudo .venv/bin/python bench/regenerate_profiles.py --only {name}",
                "recommend_flags": flags,
            }
            save_profile(replace(profile, evidence=evidence), out / f"{name}.toml")
            print(f"{name}: {rec.verdict.text} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
