"""The daemon's one-line status: systemd's STATUS= (`systemctl status tuner`) and the state's activity."""

from __future__ import annotations

from tuner.daemon.config import DaemonConfig
from tuner.daemon.state import DaemonState

__all__ = ["status_line"]


def status_line(
    state: DaemonState, config: DaemonConfig, netns: str | None, now: float, extra: str | None = None
) -> str:
    """What the daemon is doing, e.g. ``apply mode, watching 2 services; searching ... (trial 3/20)``."""
    if not config.enabled:
        text = "disabled by configuration (enabled = false)"
    else:
        n = sum(1 for r in state.services.values() if r.streak > 0)
        parts = [
            f"{config.mode.value} mode, watching {n} service{'s' if n != 1 else ''}"
            + (f" in netns {netns}" if netns else "")
        ]
        act = state.search
        if act is not None:
            trial = f"trial {act.trial}/{act.budget}" if act.trial else "starting"
            parts.append(f"searching {act.service} ({trial})")
        if state.queue.pending:
            parts.append(f"{len(state.queue.pending)} queued")
        if state.guard is not None:
            left = max(0.0, state.guard.deadline - now)
            parts.append(f"guarding {state.guard.profile} ({left:.0f} s left)")
        parts.append(f"{len(state.profiles)} profiles written")
        if state.manual:
            parts.append(f"{len(state.manual)} knobs manual")
        text = "; ".join(parts)
    if extra:
        text += f" ({extra})"
    return text
