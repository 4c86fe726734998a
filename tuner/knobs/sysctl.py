"""Reading and writing sysctls of the catalogue under an injectable root.

``SysctlTree(Path("/proc/sys"))`` is the live kernel of the calling process's network namespace;
tests pass a fake tree. A path is derived only from a catalogue :class:`Knob`, never from user text.
Writing is a primitive for the applier and the sandbox; nothing else calls :meth:`SysctlTree.write`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuner.knobs.catalogue import Knob
from tuner.knobs.domains import Value

__all__ = ["PROC_SYS", "SysctlTree"]

PROC_SYS = Path("/proc/sys")


@dataclass(frozen=True)
class SysctlTree:
    root: Path = PROC_SYS

    def available(self, knob: Knob) -> bool:
        return knob.is_sysctl and knob.sysctl_path(self.root).is_file()

    def read_text(self, knob: Knob) -> str:
        return knob.sysctl_path(self.root).read_text().strip()

    def read(self, knob: Knob) -> Value | None:
        """The live value, or ``None`` where this kernel (or namespace) lacks the knob."""
        if not self.available(knob):
            return None
        return knob.domain.from_kernel(self.read_text(knob))

    def write(self, knob: Knob, value: Value) -> None:
        """Write one value; raises ``OSError`` as the kernel reports it (EINVAL, EPERM, ...)."""
        text = knob.domain.to_kernel(value) + "\n"
        with open(knob.sysctl_path(self.root), "w") as f:
            f.write(text)
