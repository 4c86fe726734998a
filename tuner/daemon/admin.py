"""Respecting the administrator: who else sets a knob, and which values the daemon set were changed.

- :func:`sysctl_sources` finds the sysctl.d / sysctl.conf lines that set a knob (the daemon never
  writes those: at boot systemd-sysctl applies them and they are the administrator's decision);
- :func:`find_overrides` compares what the daemon set with what is live now (a difference means
  someone else changed it: the knob becomes manually managed);
- :func:`other_tuners` names running tuning daemons (tuned, bpftune) that could be the writer.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tuner.knobs import Value

__all__ = [
    "SYSCTL_CONF",
    "SYSCTL_DIRS",
    "SysctlSource",
    "describe_writer",
    "find_overrides",
    "normalize",
    "other_tuners",
    "parse_sysctl_conf",
    "sysctl_sources",
]

# systemd-sysctl's search path, highest precedence first (a file name in an earlier directory hides
# the same name in a later one), then procps' /etc/sysctl.conf.
SYSCTL_DIRS: tuple[Path, ...] = (
    Path("/etc/sysctl.d"),
    Path("/run/sysctl.d"),
    Path("/usr/local/lib/sysctl.d"),
    Path("/usr/lib/sysctl.d"),
)
SYSCTL_CONF = Path("/etc/sysctl.conf")
_TUNERS = frozenset({"tuned", "bpftune"})


@dataclass(frozen=True)
class SysctlSource:
    file: str
    line: int
    value: str

    def describe(self) -> str:
        return f"{self.file}:{self.line} sets it to {self.value}"


def parse_sysctl_conf(text: str) -> list[tuple[int, str, str]]:
    """``(line, key, value)`` of every assignment in a sysctl.d file; keys normalised to dots."""
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().lstrip("-").strip()  # "-key = v": ignore errors for this key
        if "/" in key and "." not in key.split("/")[0]:
            key = key.replace("/", ".")
        out.append((n, key, value.strip()))
    return out


def _conf_files(dirs: Iterable[Path], conf: Path | None) -> list[Path]:
    chosen: dict[str, Path] = {}
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = d / name
    files = [chosen[n] for n in sorted(chosen)]
    if conf is not None:
        files.append(conf)
    return files


def sysctl_sources(
    knob: str, dirs: Iterable[Path] = SYSCTL_DIRS, conf: Path | None = SYSCTL_CONF
) -> list[SysctlSource]:
    """Every line of the effective sysctl.d files (and sysctl.conf) that sets ``knob``."""
    found = []
    for file in _conf_files(dirs, conf):
        try:
            text = file.read_text(errors="replace")
        except OSError:
            continue
        for line, key, value in parse_sysctl_conf(text):
            if key == knob or ("*" in key and fnmatch.fnmatchcase(knob, key)):
                found.append(SysctlSource(str(file), line, value))
    return found


def normalize(value: object) -> object:
    """A knob value as comparable data: JSON lists and tuples alike."""
    return tuple(value) if isinstance(value, list) else value


def find_overrides(
    owned: Mapping[str, object], live: Mapping[str, Value | None]
) -> dict[str, tuple[object, object]]:
    """Knobs whose live value is no longer the value the daemon set: ``{knob: (set, live)}``.

    A knob that vanished (None, e.g. a module unloaded) is not an override.
    """
    out = {}
    for knob, expected in owned.items():
        now = live.get(knob)
        if now is not None and normalize(now) != normalize(expected):
            out[knob] = (normalize(expected), normalize(now))
    return out


def other_tuners(proc: Path = Path("/proc")) -> list[str]:
    """Running tuning daemons that write the same settings, as ``name (pid N)``."""
    found: list[str] = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            comm = (proc / entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm in _TUNERS:
            found.append(f"{comm} (pid {entry})")
    return sorted(found)


def describe_writer(knob: str, sources: list[SysctlSource], tuners: list[str]) -> str:
    """What is known about who set ``knob``, in one line for logs and `tuner status`."""
    parts = [s.describe() for s in sources]
    if tuners:
        parts.append("running: " + ", ".join(tuners))
    return "; ".join(parts) if parts else "unknown writer (no sysctl.d line and no other tuning daemon found)"
