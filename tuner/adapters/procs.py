"""The one module that imports psutil: which process (and systemd unit) holds a socket; the CPU time
the hypervisor took from this machine.

Sockets are matched by inode: ``/proc/PID/fd/N -> socket:[INODE]``. Socket inodes are unique across
the whole system, so this works for sockets of any network namespace as long as the processes are in
our PID namespace (a child that entered a network namespace still sees the host's /proc/PID).
psutil enumerates processes and names them; it has no public call for socket inodes, so the fd links
are read directly.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path

import psutil

from tuner.kernel import Owner
from tuner.logs import get_logger

__all__ = ["SocketOwners", "psutil_connection_count", "steal_seconds", "unit_from_cgroup"]

log = get_logger(__name__)
PROC = Path("/proc")
_UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap", ".slice")


def unit_from_cgroup(text: str) -> str | None:
    """The systemd unit of a process from its /proc/PID/cgroup text (cgroup v2 or v1 ``name=systemd``)."""
    path = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, cg = parts
        if hierarchy == "0" and controllers == "":
            path = cg
            break
        if controllers == "name=systemd":
            path = cg
    if not path:
        return None
    for component in reversed(path.strip("/").split("/")):
        if component.endswith(_UNIT_SUFFIXES) and not component.endswith(".slice"):
            return component
    return None


class SocketOwners:
    """inode -> :class:`Owner`, remembered between lookups.

    A lookup scans processes only for inodes it has never resolved, and stops as soon as all of them
    are found, so a daemon that looks up the same long-lived sockets every interval scans nothing.
    """

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self._owners: dict[int, Owner] = {}
        self._unowned: set[int] = set()  # searched by a full scan and not found (another PID namespace)
        self._units: dict[int, str | None] = {}
        self.scans = 0  # number of process scans done (for tests and the bench)

    def lookup(self, inodes: Iterable[int]) -> dict[int, Owner]:
        wanted = {i for i in inodes if i}
        missing = wanted - self._owners.keys() - self._unowned
        if missing:
            self._scan(missing)
        return {i: self._owners[i] for i in wanted if i in self._owners}

    def retain(self, inodes: Collection[int]) -> None:
        """Forget the sockets not in ``inodes`` (closed ones), keeping the cache small."""
        keep = set(inodes)
        self._owners = {i: o for i, o in self._owners.items() if i in keep}
        self._unowned &= keep

    def _unit(self, pid: int) -> str | None:
        if pid not in self._units:
            try:
                self._units[pid] = unit_from_cgroup((self.proc / str(pid) / "cgroup").read_text())
            except OSError:
                self._units[pid] = None
        return self._units[pid]

    def _scan(self, missing: set[int]) -> None:
        self.scans += 1
        remaining = set(missing)
        live_pids: set[int] = set()
        for process in psutil.process_iter(["pid", "name"]):
            pid = process.info["pid"]
            live_pids.add(pid)
            found = self._socket_inodes(pid) & remaining
            if not found:
                continue
            owner = Owner(pid, process.info["name"] or "?", self._unit(pid))
            for inode in found:
                self._owners[inode] = owner
            remaining -= found
            if not remaining:
                break
        else:  # a full pass: what is still missing has no process we can see
            self._unowned |= remaining
            self._units = {p: u for p, u in self._units.items() if p in live_pids}
        log.debug("procs.scanned", wanted=len(missing), unresolved=len(remaining))

    def _socket_inodes(self, pid: int) -> set[int]:
        fd_dir = f"{self.proc}/{pid}/fd"
        out: set[int] = set()
        try:
            names = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            return out
        for name in names:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
        return out


def psutil_connection_count(kind: str = "tcp") -> int:
    """How many sockets ``psutil.net_connections(kind)`` lists (a baseline for the observe benchmark)."""
    return len(psutil.net_connections(kind))


def steal_seconds() -> tuple[float, int]:
    """(CPU seconds the hypervisor has taken from this machine since boot, summed over its CPUs (0 on
    bare metal or where the kernel does not count it), the number of CPUs)."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0)), psutil.cpu_count() or 1
