"""Manual overrides: a knob the daemon set whose live value someone else changed is left alone from then on.

The daemon compares what it set (``state.owned``) with what is live at every observation, before
re-writing a knob it owns and before a rollback; a difference makes the knob manually managed
(``state.manual``), with what is known about the writer, until `tuner daemon --release` hands it back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tuner.daemon.access import KnobAccess
from tuner.daemon.admin import describe_writer, find_overrides, other_tuners, sysctl_sources
from tuner.daemon.state import DaemonState, ManualKnob
from tuner.errors import TunerError
from tuner.logs import get_logger

__all__ = ["ManualKnobs"]

log = get_logger(__name__)


class ManualKnobs:
    """Detects and records the knobs an administrator took over, and releases them on request."""

    def __init__(self, state: DaemonState, target: KnobAccess, clock: Callable[[], float]) -> None:
        self.state = state
        self.target = target
        self.clock = clock

    def take_over(self, mine: Mapping[str, object]) -> list[str]:
        """Of ``mine`` (knob -> the value the daemon set), the knobs whose live value differs now; each
        becomes manually managed. Raises TunerError when the live values cannot be read."""
        if not mine:
            return []
        live = self.target.read(list(mine))
        overrides = find_overrides(mine, live)
        for knob, (expected, found) in overrides.items():
            self._mark(knob, expected, found)
        return list(overrides)

    def check(self) -> None:
        """Every knob the daemon set whose live value someone else changed becomes manually managed."""
        try:
            self.take_over({k: o.value for k, o in self.state.owned.items()})
        except TunerError as exc:
            log.error("knob.read_failed", error=exc.message)

    def release(self, knob: str) -> None:
        if self.state.manual.pop(knob, None) is not None:
            log.info("knob.released", knob=knob)
        else:
            log.info("knob.release_ignored", knob=knob, reason="it was not marked manual")

    def _mark(self, knob: str, expected: object, found: object) -> None:
        writer = describe_writer(knob, sysctl_sources(knob), other_tuners())
        self.state.manual[knob] = ManualKnob(self.clock(), expected, found, writer)
        owner = self.state.owned.pop(knob, None)
        log.warning(
            "knob.manual",
            knob=knob,
            set_by_daemon=expected,
            live=found,
            writer=writer,
            profile=owner.profile if owner else None,
            hint=f"left alone from now on; `tuner daemon --release {knob}` hands it back",
        )
