"""Helpers of the daemon tests: a NOTIFY_SOCKET listener, the daemon process, namespace probes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

WORKLOADS = Path(__file__).with_name("daemon_workloads.py")
REPO = Path(__file__).resolve().parents[2]

BASE_CONFIG = """
state_dir = "{state_dir}"
[observe]
interval = "0.5s"
settle = 2
[search]
budget = 2
repeats = 5
duration = "0.1s"
time = "60s"
stop_grace = "5s"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, list] | None:
    """The daemon's /metrics parsed by prometheus_client's parser: sample name -> [(labels, value)];
    None while nothing answers."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class NotifyListener:
    """Collects every datagram the daemon sends to NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        def found() -> str | None:
            return next((m for m in list(self.messages) if predicate(m)), None)

        return wait_for(found, timeout, what)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry))
    return out


def sandboxes_of(pid: int) -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(f"tuner-{pid}-"))
    except FileNotFoundError:
        return []


class DaemonProcess:
    def __init__(self, tmp_path: Path, netns: str, notify: NotifyListener, config: str) -> None:
        self.tmp_path = tmp_path
        self.netns = netns
        self.notify = notify
        self.state_dir = tmp_path / "state"
        self.config_path = tmp_path / "tuner.toml"
        self.write_config(config)
        self.log_path = tmp_path / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.search_pids: set[int] = set()

    def write_config(self, extra: str) -> None:
        """The test settings (BASE_CONFIG) with ``extra`` (TOML) merged over them."""

        def merge(base: dict, over: dict) -> dict:
            out = dict(base)
            for k, v in over.items():
                out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
            return out

        data = merge(tomllib.loads(BASE_CONFIG.format(state_dir=self.state_dir)), tomllib.loads(extra))
        self.config_path.write_text(tomli_w.dumps(data))

    def start(self, env_extra: dict[str, str] | None = None) -> DaemonProcess:
        env = {**os.environ, "NOTIFY_SOCKET": self.notify.path, "PYTHONPATH": str(REPO), **(env_extra or {})}
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuner",
                "--log-level",
                "info",
                "daemon",
                "--config",
                str(self.config_path),
                "--netns",
                self.netns,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tuner", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=check,
            timeout=60,
        )

    def state(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.state_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if data.get("search"):
            self.search_pids.add(int(data["search"]["pid"]))
        return data

    def wait_state(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float, what: str
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the daemon exited ({self.proc.returncode}) while waiting for {what}:\n"
                    + self.log_text()[-3000:]
                )
            s = self.state()
            return s if s is not None and predicate(s) else None

        return wait_for(check, timeout, what)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - t0

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.state()
        for pid in self.search_pids:  # a search child left by a daemon that was killed
            for member in group_members(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)
            for name in sandboxes_of(pid):
                subprocess.run(["ip", "netns", "del", name], check=False)
        if getattr(self, "log", None):
            self.log.close()


def ns_sysctl(netns: str, name: str) -> str:
    path = "/proc/sys/" + name.replace(".", "/")
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", path], capture_output=True, text=True, check=True
    )
    return " ".join(out.stdout.split())


def ns_set_sysctl(netns: str, name: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{name}={value}"], check=True)


def maps_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
