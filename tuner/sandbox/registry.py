"""The record of live sandboxes, and the reaper of stale ones.

Every sandbox writes ``/run/tuner/sandboxes/<name>.json`` *before* it creates anything: its owner
(pid and process start time), its namespaces and its helper processes (each with its start time).
A pid alone is not an identity (pids are reused); pid + start time is.

:func:`reap_stale` removes what dead owners left behind (after a SIGKILL, say) and nothing else:

- a record whose owner is alive is never touched;
- a helper is killed only if its pid still has the recorded start time;
- a ``tuner-<pid>-...`` namespace without a record (a test fixture's, or one whose record was lost)
  is removed only if process ``pid`` no longer exists and no process is inside the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuner.adapters.rtnl import remove_netns
from tuner.logs import get_logger
from tuner.netns import NETNS_DIR

__all__ = [
    "REGISTRY_DIR",
    "ProcessId",
    "Registry",
    "SandboxRecord",
    "process_start",
    "processes_in_netns",
    "reap_stale",
    "stale_sandboxes",
]

log = get_logger(__name__)

REGISTRY_DIR = Path("/run/tuner/sandboxes")
_OWNED_NAME = re.compile(r"^tuner-(\d+)-")


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        if fields[0] == b"Z":  # a zombie has finished: it owns nothing any more
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessId:
    """A process as an identity: pid plus start time."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        start = process_start(pid)
        if start is None:
            raise ProcessLookupError(pid)
        return cls(pid, start)

    def alive(self) -> bool:
        return process_start(self.pid) == self.start


@dataclass(frozen=True)
class SandboxRecord:
    name: str
    owner: ProcessId
    netns: tuple[str, ...]
    helpers: tuple[ProcessId, ...] = ()
    created: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandboxRecord:
        d = json.loads(text)
        return cls(
            name=str(d["name"]),
            owner=ProcessId(**d["owner"]),
            netns=tuple(d["netns"]),
            helpers=tuple(ProcessId(**h) for h in d.get("helpers", ())),
            created=float(d["created"]),
        )


class Registry:
    """The directory of sandbox records (one JSON file per sandbox, replaced atomically)."""

    def __init__(self, root: Path = REGISTRY_DIR) -> None:
        self.root = root

    def _file(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def write(self, record: SandboxRecord) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.root / f".{record.name}.json.{os.getpid()}"
        tmp.write_text(record.to_json())
        os.replace(tmp, self._file(record.name))

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._file(name).unlink()

    def records(self) -> list[SandboxRecord]:
        """Every readable record; unreadable files older than a minute are removed as garbage."""
        out: list[SandboxRecord] = []
        try:
            files = sorted(self.root.glob("*.json"))
        except OSError:
            return out
        for f in files:
            try:
                out.append(SandboxRecord.from_json(f.read_text()))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                try:
                    if time.time() - f.stat().st_mtime > 60:
                        f.unlink()
                        log.warning("sandbox.record_discarded", file=str(f), error=str(exc))
                except OSError:
                    pass
        return out


def _netns_names(netns_dir: Path) -> list[str]:
    try:
        return sorted(p.name for p in netns_dir.iterdir())
    except OSError:
        return []


def processes_in_netns(path: Path) -> list[int]:
    """Pids of the processes living in the network namespace bound at ``path``."""
    try:
        st = path.stat()
    except OSError:
        return []
    target = (st.st_dev, st.st_ino)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == target:
            found.append(int(entry.name))
    return found


def _kill(helper: ProcessId) -> None:
    if not helper.alive():
        return
    try:
        os.kill(helper.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 2.0
    while helper.alive() and time.monotonic() < deadline:
        time.sleep(0.005)


def _remove_netns(name: str, netns_dir: Path) -> bool:
    if not (netns_dir / name).exists():
        return False
    try:
        remove_netns(name)
    except OSError as exc:
        if (netns_dir / name).exists():
            log.warning("sandbox.reap_failed", netns=name, error=str(exc))
            return False
    return True


def stale_sandboxes(
    registry: Registry | None = None, netns_dir: Path = NETNS_DIR
) -> tuple[list[SandboxRecord], list[str]]:
    """What :func:`reap_stale` would remove: records of dead owners, and orphan namespaces."""
    registry = registry or Registry()
    records = registry.records()
    stale = [r for r in records if not r.owner.alive()]
    known = {ns for r in records for ns in r.netns}
    orphans = []
    for name in _netns_names(netns_dir):
        m = _OWNED_NAME.match(name)
        if not m or name in known:
            continue
        if process_start(int(m.group(1))) is not None:
            continue  # its owner (or a process that reused the pid) is alive: leave it
        if processes_in_netns(netns_dir / name):
            continue
        orphans.append(name)
    return stale, orphans


def reap_stale(registry: Registry | None = None, netns_dir: Path = NETNS_DIR) -> list[str]:
    """Remove sandboxes and ``tuner-`` namespaces of dead owners; returns the names removed."""
    registry = registry or Registry()
    stale, orphans = stale_sandboxes(registry, netns_dir)
    removed: list[str] = []
    for record in stale:
        for helper in record.helpers:
            _kill(helper)
        gone = [ns for ns in record.netns if _remove_netns(ns, netns_dir)]
        registry.remove(record.name)
        removed.append(record.name)
        log.info(
            "sandbox.reaped",
            sandbox=record.name,
            owner=record.owner.pid,
            netns=gone,
            helpers=[h.pid for h in record.helpers],
        )
    for name in orphans:
        if _remove_netns(name, netns_dir):
            removed.append(name)
            log.info("sandbox.reaped_orphan_netns", netns=name)
    return removed
