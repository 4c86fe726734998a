#!/usr/bin/env python3
"""Hostile-input table: every bad profile, config, state file and command-line value we know of, fed to the
real `tuner` command; counts how many were refused cleanly (exit 2, a message, no traceback), accepted, or
crashed (a traceback, or an exit code other than 0/2).

    sudo .venv/bin/python bench/hostile_inputs.py [--out bench/results/hostile_inputs.md]

Writes nothing outside a temporary directory; state files are read by `tuner status --state-dir TMP`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAD = (
    'version = 1\n[profile]\nname = "x"\ncreated = 2026-01-01T00:00:00Z\ntuner_version = "0.1"\n'
    'kernel = "6.1"\n'
)


def tuner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def outcome(done: subprocess.CompletedProcess, accepted: tuple[int, ...] = (0,)) -> str:
    if "Traceback" in done.stderr or done.returncode not in (*accepted, 1, 2, 3):
        return "crashed"
    return "refused" if done.returncode == 2 else "accepted"


def profiles(tmp: Path) -> list[tuple[str, str]]:
    extra = {
        "deep-table": HEAD + "[sysctl." + ".".join(["a"] * 3000) + "]\nb = 1\n",
        "deep-array": HEAD + '[sysctl]\n"net.core.somaxconn" = ' + "[" * 50_000 + "]" * 50_000 + "\n",
        "rtt-400-digits": HEAD + "[path]\nrtt = " + "9" * 400 + "\n",
        "rtt-inf": HEAD + "[path]\nrtt = inf\n",
        "connections-10e400": HEAD + '[workload]\nkind = "rr"\nconnections = 1' + "0" * 400 + "\n",
        "think-time-inf": HEAD + '[workload]\nkind = "rr"\nthink_time = inf\n',
        "port-range-1-65535": HEAD + '[sysctl]\n"net.ipv4.ip_local_port_range" = [1, 65535]\n',
        "tcp-mem-1-1-1": HEAD + '[sysctl]\n"net.ipv4.tcp_mem" = [1, 1, 1]\n',
    }
    files = sorted((REPO / "tests" / "profiles" / "bad").iterdir())
    for name, text in extra.items():
        f = tmp / f"{name}.toml"
        f.write_text(text)
        files.append(f)
    # render has no target machine (the file may be deployed elsewhere), so machine-relative floors such
    # as tcp_mem >= 1/1024 of RAM are checked by verify and apply only
    return [
        (f"{f.name} ({' '.join(verb)})", outcome(tuner(*verb, str(f))))
        for f in files
        for verb in (["render"], ["verify"], ["apply", "--dry-run"])
    ]


def configs(tmp: Path) -> list[tuple[str, str]]:
    cases = {
        "deep-nesting": "[observe]\ninterval = " + "[" * 20_000 + "]" * 20_000 + "\n",
        "not-toml": "[observe\n",
        "unknown-key": "[observe]\nintervall = 10\n",
        "inf-number": "[guard]\nmax_rtt_increase = inf\n",
        "nan-number": "[guard]\nmax_rtt_increase = nan\n",
        "400-digits": "[guard]\nmax_rtt_increase = 1" + "0" * 400 + "\n",
        "duration-99999h": '[observe]\ninterval = "99999h"\n',
        "bad-mode": 'mode = "yolo"\n',
        "allow-socket-option": '[apply]\nallow = ["TCP_NODELAY"]\n',
        "binary": "\x00\x01\x02",
    }
    rows = []
    for name, text in cases.items():
        f = tmp / f"cfg-{name}.toml"
        f.write_text(text)
        rows.append((name, outcome(tuner("daemon", "--config", str(f), "--check-config"))))
    ww = tmp / "cfg-world-writable.toml"
    ww.write_text('mode = "apply"\n')
    ww.chmod(0o666)
    rows.append(("world-writable", outcome(tuner("daemon", "--config", str(ww), "--check-config"))))
    rows.append(("/dev/zero", outcome(tuner("daemon", "--config", "/dev/zero", "--check-config"))))
    return rows


def states(tmp: Path) -> list[tuple[str, str]]:
    cases = {
        "deep-nesting": "[" * 100_000 + "]" * 100_000,
        "truncated": '{"version": 1, "services": {"x": ',
        "wrong-shape": "[1, 2]",
        "future-version": '{"version": 99}',
        "nan": '{"version": 1, "updated": NaN}',
        "binary": "\x00\xff",
    }
    rows = []
    for name, text in cases.items():
        d = tmp / f"state-{name}"
        d.mkdir(mode=0o700)
        (d / "state.json").write_text(text)
        # `status` reads the state as it is (exit 1 naming the file); the daemon sets such a file aside
        rows.append((name, outcome(tuner("status", "--state-dir", str(d)), accepted=(0, 1))))
    return rows


def cli_values() -> list[tuple[str, str]]:
    cases = [
        ["probe", "rr", "--rtt", "99999h"],
        ["probe", "rr", "--rtt", "-1ms"],
        ["probe", "rr", "--rtt", "nan"],
        ["probe", "rr", "--rate", "9" * 400 + "mbit"],
        ["probe", "rr", "--rate", "0"],
        ["probe", "rr", "--loss", "150%"],
        ["probe", "rr", "--request-size", "0"],
        ["probe", "rr", "--request-size", "1" + "0" * 30],
        ["probe", "rr", "--connections", "1" + "0" * 400],
        ["probe", "rr", "--think-time", "inf"],
        ["probe", "udp", "--udp-rate", "0"],
        ["probe", "rr", "--set", "TCP_NODELAY=maybe"],
        ["probe", "rr", "--set", "kernel.core_pattern=|/bin/sh"],
        ["probe", "rr", "--set", "net.ipv4.ip_local_port_range=1 65535"],
        ["recommend", "rr", "--budget", "100000"],
        ["recommend", "rr", "--budget", "0"],
        ["recommend", "rr", "--time", "99999h"],
        ["recommend", "rr", "--repeats", "1000"],
        ["recommend", "rr", "--duration", "0"],
        ["recommend", "rr", "--sampler", "magic"],
        ["recommend", "rr", "--objective", "nonsense"],
    ]
    return [(" ".join(c)[:60], outcome(tuner(*c))) for c in cases]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        groups = {
            "profiles × (render, verify, apply --dry-run)": profiles(tmp),
            "daemon configs": configs(tmp),
            "daemon state files": states(tmp),
            "command-line values": cli_values(),
        }
    lines = ["| input | tried | refused (exit 2) | accepted | crashed |", "|---|---|---|---|---|"]
    for name, rows in groups.items():
        c = Counter(r for _, r in rows)
        lines.append(f"| {name} | {len(rows)} | {c['refused']} | {c['accepted']} | {c['crashed']} |")
    detail = {name: [r for r in rows if r[1] != "refused"] for name, rows in groups.items()}
    text = "\n".join(lines) + "\n\nnot refused with exit 2:\n" + json.dumps(detail, indent=1) + "\n"
    print(text)
    if args.out:
        args.out.write_text("# Hostile inputs\n\n`sudo .venv/bin/python bench/hostile_inputs.py`\n\n" + text)
    return 1 if any(r == "crashed" for rows in groups.values() for _, r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
