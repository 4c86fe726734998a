"""Cost of an idle `tuner daemon` (no search running): resident memory and CPU at a 10 s observe interval.

    sudo .venv/bin/python bench/daemon_idle.py [--seconds 60] [--interval 10s] [--connections 2000]

Scenarios, measured one after the other in the same run:

- ``python baseline``: a bare interpreter that sleeps (the floor for resident memory);
- ``daemon disabled``: `tuner daemon` with ``enabled = false`` (the loop, signals, state, no observing);
- ``daemon, host``: observing this host's own namespace (read only; recommend mode);
- ``daemon in ns``: the daemon started inside a namespace the benchmark creates (``ip netns exec``),
  holding ``--connections`` established loopback connections plus a request/response workload: the
  production code path (observation in process) under a known load;
- ``daemon --netns``: the same namespace observed from outside with ``--netns`` (the test and
  container path: each observation forks a child into the namespace and pickles the snapshot back).

Searches are disabled in every scenario (``[search] enabled = false``): this measures the idle loop.
CPU is the run time of the daemon and of its live descendants (/proc/PID/schedstat, nanoseconds; the
``--netns`` scenario has a long-lived observer child in the namespace) plus the CPU of children it
reaped (/proc/PID/stat cutime+cstime, clock ticks). Memory: the daemon's VmRSS and VmHWM (peak), and
the proportional set size (Pss, /proc/PID/smaps_rollup) summed over the daemon and its descendants,
which counts pages shared after fork once.
Targets (issue 7): RSS < 60 MB and CPU < 0.5 % of one core.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def _workload(port: int, connections: int) -> None:
    """Runs inside the bench namespace: idle connections plus 4 request/response loops."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4096)
    accepted = []

    def echo(c: socket.socket) -> None:
        while data := c.recv(100):
            c.sendall(data)

    def acceptor() -> None:
        while True:
            c, _ = srv.accept()
            accepted.append(c)
            if len(accepted) > connections:
                threading.Thread(target=echo, args=(c,), daemon=True).start()

    threading.Thread(target=acceptor, daemon=True).start()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]

    def rr() -> None:
        c = socket.create_connection(("127.0.0.1", port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            c.sendall(b"x" * 100)
            c.recv(100)
            time.sleep(0.01)

    for _ in range(4):
        threading.Thread(target=rr, daemon=True).start()
    print("ready", flush=True)
    while idle:
        time.sleep(3600)


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(
                    Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError):
                continue
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def _run_ns(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError):
        return 0.0


def _cpu_seconds(pid: int) -> tuple[float, dict[int, float], float]:
    """(own run time, live descendants' run times by pid, reaped children's CPU)."""
    own = _run_ns(pid)
    live = {d: _run_ns(d) for d in _descendants(pid)}
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / TICK
    return own, live, reaped


def _pss_tree(pid: int) -> float:
    total = 0.0
    for p in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def _memory(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def _wait_ready(sock: socket.socket, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if b"READY=1" in sock.recv(65536):
                return
        except TimeoutError:
            continue
    raise RuntimeError("the daemon did not report READY=1")


def measure(name: str, argv: list[str], seconds: float, interval: float, notify: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sock = None
    if notify:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify)
        sock.settimeout(0.5)
        env["NOTIFY_SOCKET"] = notify
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if sock is not None:
            _wait_ready(sock, 30)
            time.sleep(interval + 1)  # past the first reading, which only primes the comparison
        else:
            time.sleep(1)
        own0, live0, ch0 = _cpu_seconds(proc.pid)
        t0 = time.monotonic()
        samples = []
        while time.monotonic() - t0 < seconds:
            time.sleep(min(interval, seconds - (time.monotonic() - t0)))
            samples.append(_memory(proc.pid)[0])
        own1, live1, ch1 = _cpu_seconds(proc.pid)
        elapsed = time.monotonic() - t0
        rss, hwm = _memory(proc.pid)
        pss = _pss_tree(proc.pid)
        descendants = sum(t - live0.get(p, 0.0) for p, t in live1.items())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if sock is not None:
            sock.close()
    own, children = own1 - own0, ch1 - ch0 + descendants
    return {
        "name": name,
        "seconds": elapsed,
        "cpu_own_s": own,
        "cpu_children_s": children,
        "cpu_pct": 100 * (own + children) / elapsed,
        "rss_mb": rss,
        "rss_median_mb": statistics.median(samples),
        "hwm_mb": hwm,
        "pss_tree_mb": pss,
        "observations": int(elapsed / interval),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measuring time per scenario (default 60)")
    ap.add_argument("--interval", default="10s", help="observe interval (default 10s)")
    ap.add_argument("--connections", type=int, default=2000, help="idle connections in the bench namespace")
    ap.add_argument("--workload", nargs=2, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.workload:
        _workload(int(args.workload[0]), int(args.workload[1]))
        return 0
    if os.geteuid() != 0:
        print("run as root (namespaces)", file=sys.stderr)
        return 3
    from tuner.units import parse_duration

    interval = parse_duration(args.interval)
    ns = f"tuner-{os.getpid()}-bench"
    results = []
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as tmp:
        tmpd = Path(tmp)

        def config(name: str, extra: str = "") -> str:
            f = tmpd / f"{name}.toml"
            f.write_text(
                f'state_dir = "{tmpd / name}"\n{extra}\n[observe]\ninterval = "{args.interval}"\n'
                "[search]\nenabled = false\n"
            )
            return str(f)

        daemon = [sys.executable, "-m", "tuner", "daemon"]
        results.append(
            measure(
                "python baseline",
                [sys.executable, "-c", "import time; time.sleep(3600)"],
                args.seconds,
                interval,
                None,
            )
        )
        results.append(
            measure(
                "daemon disabled",
                [*daemon, "--config", config("off", "enabled = false")],
                args.seconds,
                interval,
                str(tmpd / "n1.sock"),
            )
        )
        results.append(
            measure(
                "daemon, host",
                [*daemon, "--config", config("host")],
                args.seconds,
                interval,
                str(tmpd / "n2.sock"),
            )
        )
        subprocess.run(["ip", "netns", "add", ns], check=True)
        wl = None
        try:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            wl = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    __file__,
                    "--workload",
                    "7000",
                    str(args.connections),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert wl.stdout is not None and wl.stdout.readline().strip() == "ready"
            results.append(
                measure(
                    f"daemon in ns, {args.connections} conns",
                    ["ip", "netns", "exec", ns, *daemon, "--config", config("inns")],
                    args.seconds,
                    interval,
                    str(tmpd / "n3.sock"),
                )
            )
            results.append(
                measure(
                    f"daemon --netns, {args.connections} conns",
                    [*daemon, "--config", config("ns"), "--netns", ns],
                    args.seconds,
                    interval,
                    str(tmpd / "n4.sock"),
                )
            )
        finally:
            if wl is not None:
                wl.kill()
                wl.wait()
            subprocess.run(["ip", "netns", "del", ns], check=False)
    base = results[0]
    print(
        f"idle daemon cost, observe interval {args.interval}, {args.seconds:g} s per scenario "
        f"(kernel {os.uname().release}, {os.cpu_count()} cores)"
    )
    print(
        f"{'scenario':34} {'RSS MB':>7} {'peak MB':>8} {'xbase':>6} {'tree PSS':>9} {'CPU %':>7} {'children':>9} "
        f"{'ms/obs':>7}"
    )
    for r in results:
        per_obs = 1000 * (r["cpu_own_s"] + r["cpu_children_s"]) / max(1, r["observations"])
        child_share = r["cpu_children_s"] / max(1e-9, r["cpu_own_s"] + r["cpu_children_s"])
        print(
            f"{r['name']:34} {r['rss_mb']:7.1f} {r['hwm_mb']:8.1f} {r['rss_mb'] / base['rss_mb']:6.2f} "
            f"{r['pss_tree_mb']:9.1f} {r['cpu_pct']:7.3f} {child_share:9.0%} {per_obs:7.1f}"
        )
    worst_rss = max(r["rss_mb"] for r in results[1:])
    worst_cpu = max(r["cpu_pct"] for r in results[1:])
    print(
        f"targets: RSS < 60 MB ({'met' if worst_rss < 60 else 'MISSED'}: {worst_rss:.1f}), "
        f"CPU < 0.5 % ({'met' if worst_cpu < 0.5 else 'MISSED'}: {worst_cpu:.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
