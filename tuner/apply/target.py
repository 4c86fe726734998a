"""Where settings are applied: the host, or a named network namespace.

The same plan/apply/verify/rollback code runs for both; for a namespace it runs in a child process
inside it (:func:`tuner.netns.run_in_netns`), where ``/proc/sys/net`` is the namespace's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from tuner.netns import run_in_netns

__all__ = ["HOST", "Target", "run_in_target"]

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    netns: str | None = None  # None: the host (the namespace tuner itself runs in)

    @property
    def is_host(self) -> bool:
        return self.netns is None

    @property
    def key(self) -> str:
        """A file-name-safe key for the state of this target: ``host`` or ``netns-<name>``."""
        return "host" if self.netns is None else "netns-" + quote(self.netns, safe="-_.")

    def describe(self) -> str:
        return "the host" if self.netns is None else f"network namespace {self.netns}"

    def cli_flag(self) -> str:
        """The flag that selects this target on the command line (for hints)."""
        return "" if self.netns is None else f" --netns {self.netns}"


HOST = Target()


def run_in_target(where: Target, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` where the sysctls of ``where`` are live: in this process for the host, else in the namespace."""
    if where.netns is None:
        return fn(*args, **kwargs)
    return run_in_netns(where.netns, fn, *args, **kwargs)
