"""Record real snapshot pairs for the classification unit tests (tests/observe/data/*.json).

Run as root from the repository:  python3 tests/observe/record_fixtures.py [NAME ...]

Each scenario runs a real workload in a namespace this script creates (or in a tuner Sandbox for the
long path), takes two snapshots inside it with the listener samples in between, attributes the
sockets to processes, and writes {"before", "after", "listener_peaks", ...} as JSON. Every
namespace and child is removed at the end, whatever happens.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path as FsPath

sys.path.insert(0, str(FsPath(__file__).resolve().parent))
sys.path.insert(0, str(FsPath(__file__).resolve().parents[2]))

import observe_scenarios as sc

from tuner.adapters.procs import SocketOwners
from tuner.knobs import SysctlTree, get_knob
from tuner.netns import run_in_netns
from tuner.observe.observer import collect_interval
from tuner.observe.snapshot import attribute, read_host_sysctls

DATA = FsPath(__file__).resolve().parent / "data"


@contextlib.contextmanager
def plain_netns(tag: str) -> Iterator[str]:
    name = f"tuner-{os.getpid()}-rec-{tag}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _narrow_ports() -> None:
    SysctlTree().write(get_knob("net.ipv4.ip_local_port_range"), (40000, 40099))


@contextlib.contextmanager
def _bulk(rcvbuf: int) -> Iterator[str]:
    from tuner.sandbox import Sandbox, Side
    from tuner.workload import NetworkPath as Path

    with Sandbox(Path(rtt=0.05, rate_bps=100e6)) as sb:
        host = sb.address(Side.SERVER)
        with (
            sc.Background(sb.netns(Side.SERVER), sc.bulk_receiver, host, rcvbuf),
            sc.Background(sb.netns(Side.CLIENT), sc.bulk_sender, host),
        ):
            yield sb.netns(Side.CLIENT)


def _in_netns(
    tag: str, workload: Callable[[str], ContextManager[None]], prepare: Callable[[], None] | None = None
) -> Callable[[], ContextManager[str]]:
    @contextlib.contextmanager
    def run() -> Iterator[str]:
        with plain_netns(tag) as ns:
            if prepare is not None:
                run_in_netns(ns, prepare)
            with workload(ns):
                yield ns

    return run


# name -> (how to run it, seconds between the snapshots)
SCENARIOS: dict[str, tuple[Callable[[], ContextManager[str]], float]] = {
    "listen_overflow": (_in_netns("lo", lambda ns: sc.listen_overflow(ns, connects=150)), 1.5),
    "nagle_rr": (_in_netns("na", lambda ns: sc.nagle_rr(ns)), 1.5),
    "nodelay_rr": (_in_netns("nd", lambda ns: sc.nagle_rr(ns, nodelay=True)), 1.0),
    "udp_drops": (_in_netns("ud", lambda ns: sc.udp_drops(ns)), 1.5),
    "idle_no_keepalive": (_in_netns("ik", lambda ns: sc.idle_connections(ns)), 1.0),
    "idle_keepalive": (_in_netns("ka", lambda ns: sc.idle_connections(ns, keepalive=True)), 1.0),
    "port_exhaustion": (_in_netns("pe", lambda ns: sc.short_connections(ns, count=70), _narrow_ports), 1.5),
    "bulk_rwnd_limited": (lambda: _bulk(16 * 1024), 2.0),
    "bulk_autotuned": (lambda: _bulk(0), 2.0),
}


def record(name: str) -> FsPath:
    start, duration = SCENARIOS[name]
    with start() as ns:
        before, after, peaks = run_in_netns(ns, collect_interval, duration, netns_name=ns)
        owners = SocketOwners()
        attribute(before, owners)
        attribute(after, owners)
    host = read_host_sysctls()
    for snap in (before, after):
        snap.netns = name
        for key, value in host.items():
            snap.sysctls.setdefault(key, value)
    doc = {
        "scenario": name,
        "recorded": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "listener_peaks": {str(k): v for k, v in peaks.items()},
        "before": before.to_dict(),
        "after": after.to_dict(),
    }
    DATA.mkdir(exist_ok=True)
    out = DATA / f"{name}.json"
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return out


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    for name in names:
        path = record(name)
        print(f"{name}: {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
