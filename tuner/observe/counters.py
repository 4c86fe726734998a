"""Kernel counters of a network namespace: /proc/net/netstat and /proc/net/snmp, as deltas.

Reading is cheap (two small files); parsing is pure. Keys are ``Group.Name`` as the kernel prints
them, e.g. ``TcpExt.ListenOverflows``, ``Tcp.RetransSegs``, ``Udp.RcvbufErrors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["Counters", "delta", "parse_counter_table", "read_counters"]

Counters = dict[str, int]
PROC_NET = Path("/proc/net")


def parse_counter_table(text: str) -> Counters:
    """Parse the header/value line pairs of /proc/net/netstat or /proc/net/snmp."""
    out: Counters = {}
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    for header, values in zip(lines[0::2], lines[1::2]):
        group = header[0].rstrip(":")
        if values[0].rstrip(":") != group:
            continue  # malformed pair; skip rather than misattribute
        for name, value in zip(header[1:], values[1:]):
            try:
                out[f"{group}.{name}"] = int(value)
            except ValueError:
                continue
    return out


def read_counters(proc_net: Path = PROC_NET) -> Counters:
    """The counters of the calling process's network namespace."""
    counters: Counters = {}
    for name in ("netstat", "snmp"):
        try:
            counters.update(parse_counter_table((proc_net / name).read_text()))
        except FileNotFoundError:
            continue
    return counters


def delta(before: Mapping[str, int], after: Mapping[str, int], *, nonzero: bool = True) -> Counters:
    """``after - before`` per key (keys in both); by default only the counters that moved."""
    d = {k: after[k] - before[k] for k in after.keys() & before.keys()}
    return {k: v for k, v in sorted(d.items()) if v or not nonzero}
