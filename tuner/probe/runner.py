"""run_probe: one Measurement of a Workload over a NetworkPath under an Assignment, in a Sandbox.

    m = run_probe(workload, path, assignment, repeats=3, duration=1.0, sandbox=None)

- The assignment is validated through the knob catalogue. Per-namespace sysctls go to BOTH namespaces
  (a fleet whose peers all run the profile); socket options go on the probe's own sockets (see
  :mod:`tuner.probe.sockopts`); the host-only buffer limits are emulated per socket, never written.
  Host knobs that cannot be emulated (``tcp_mem``, ``netdev_max_backlog``, ...) make the
  measurement invalid: it would not reflect them.
- Each repeat runs the workload's own warm-up before its measured window of ``duration`` seconds;
  the metrics are the median of the repeats with an interval (:func:`summarize`).
- ``counters`` holds the kernel counter deltas of each namespace summed over the kept repeats, read with
  :func:`tuner.observe.counters.read_counters` inside the namespace before and after each repeat (so
  they include each repeat's connection setup and warm-up).
- The path's health is judged per repeat (with the kind's lateness limit, ``KindSpec.max_late_p99_ms``):
  a repeat the path spoiled (a busy machine made the delay line late or drop at its TUN ring) says
  nothing about the settings and is measured again, at most ``repeats`` times per measurement, and left
  out (a note says so); ``health`` is the kept repeats' (:func:`tuner.sandbox.health.merge_health`).
- ``valid=False`` with ``invalid_reason`` when the path stayed unhealthy beyond those retries (or its
  delay line died: that is not retried) or the load generator spoiled a repeat; ``held_back`` (still
  valid) when it only held a repeat back, so the figures are a pessimistic bound; ``failed=True``
  with ``error`` when the run could not complete (a server crashed, the sandbox could not be built).
  It never raises for a failed run, and leaves no process or namespace. With a caller's ``sandbox``,
  the sysctls it changed are put back afterwards.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tuner.errors import TunerError, interrupt_behind, reraise_interrupt
from tuner.knobs import Assignment, Scope, SysctlTree, Value, get_knob
from tuner.logs import get_logger
from tuner.observe.counters import Counters, delta, read_counters
from tuner.probe.base import RepeatEnv, Sample, ServerCrashed
from tuner.probe.measurement import METRICS, Measurement, summarize
from tuner.probe.sockopts import HostLimits, SocketOptions
from tuner.probe.target import CONGESTION, NOT_COPIED, TargetBaseline, read_scope
from tuner.workload import NetworkPath, Workload

if TYPE_CHECKING:
    from tuner.sandbox.health import PathHealth

__all__ = ["default_warmup", "run_probe"]

log = get_logger(__name__)

_SIDES = ("client", "server")


def default_warmup(duration: float, path: NetworkPath) -> float:
    """Run before each measured window: a fifth of the window (0.1..0.5 s) plus two round trips."""
    return min(0.5, max(0.1, 0.2 * duration)) + 2 * path.rtt


def _read_sysctls(names: list[str]) -> dict[str, Value | None]:
    tree = SysctlTree()
    return {name: tree.read(get_knob(name)) for name in names}


def _health_dict(health: Any) -> dict[str, float]:
    return {k: v for k, v in health.to_dict().items() if isinstance(v, (int, float))}


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    inner = exc.__cause__ or exc.__context__
    client = inner.__context__ if inner is not None else None
    if isinstance(exc, ServerCrashed) and client is not None:
        text += f"; the client saw {type(client).__name__}: {client}"
    elif not isinstance(exc, TunerError):
        text = f"{type(exc).__name__}: {text}"
    return text


def run_probe(
    workload: Workload,
    path: NetworkPath,
    assignment: Mapping[str, Any],
    *,
    repeats: int = 3,
    duration: float = 1.0,
    sandbox: Any = None,
    target: TargetBaseline | None = None,
) -> Measurement:
    """Measure ``workload`` over ``path`` under ``assignment``; see the module documentation."""
    t0 = time.monotonic()
    base = Measurement(
        workload=workload, path=path, assignment=dict(assignment), repeats=0, duration=duration
    )

    def failed(error: str, **fields: Any) -> Measurement:
        log.warning("probe.failed", kind=workload.kind.value, error=error)
        return replace(base, failed=True, valid=False, error=error, **fields)

    if repeats < 1 or duration <= 0:
        return failed(f"repeats ({repeats}) and duration ({duration:g} s) must be positive")
    try:
        canonical = Assignment.checked(assignment)
    except TunerError as exc:
        return failed(f"invalid assignment: {exc}" + (f" ({exc.hint})" if exc.hint else ""))
    base = Measurement(workload=workload, path=path, assignment=canonical, repeats=0, duration=duration)
    log.info(
        "probe.started",
        kind=workload.kind.value,
        path=path.describe(),
        assignment=dict(canonical),
        repeats=repeats,
        duration=duration,
    )
    try:
        limits = target.host_limits() if target is not None else HostLimits.read()
        emulated: dict[str, Value] = {}
        if target is not None and not {CONGESTION, "TCP_CONGESTION"} & set(canonical):
            emulated = target.socket_emulation()  # what the sandbox namespace refuses, per socket
        options = SocketOptions.from_assignment({**emulated, **canonical}, limits)
        sysctls = canonical.netns_sysctls
        if sandbox is None:
            from tuner.sandbox import Sandbox

            # the target's own per-namespace values first, the assignment's on top (see tuner.probe.target)
            start = {**(target.sandbox_sysctls() if target is not None else {}), **sysctls}
            with Sandbox(path, client_sysctls=start, server_sysctls=start) as sb:
                m = _measure(sb, base, options, repeats, duration, target)
        else:
            m = _measure_in(sandbox, base, options, sysctls, repeats, duration, target)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe reports failures, it does not raise them
        if interrupt_behind(exc) is not None:
            log.warning("probe.interrupted", kind=workload.kind.value, cleanup_error=_error_text(exc))
            reraise_interrupt(exc)
        return failed(_error_text(exc))
    log.info(
        "probe.finished",
        kind=workload.kind.value,
        valid=m.valid,
        failed=m.failed,
        reason=m.invalid_reason or m.error,
        seconds=round(time.monotonic() - t0, 3),
        **{k: round(s.median, 4) for k, s in m.metrics.items()},
    )
    return m


def _measure_in(
    sb: Any,
    base: Measurement,
    options: SocketOptions,
    sysctls: Assignment,
    repeats: int,
    duration: float,
    target: TargetBaseline | None = None,
) -> Measurement:
    """In the caller's sandbox: apply the sysctls to both sides, measure, put the old values back."""
    from tuner.sandbox import Side

    originals = {side: sb.run(side, _read_sysctls, list(sysctls)) for side in (Side.CLIENT, Side.SERVER)}
    try:
        for side in (Side.CLIENT, Side.SERVER):
            sb.apply_sysctls(side, sysctls)
        return _measure(sb, base, options, repeats, duration, target)
    finally:
        for side, values in originals.items():
            restore = {k: v for k, v in values.items() if v is not None}
            if restore:
                sb.apply_sysctls(side, restore)


def _baseline_in(sb: Any, base: Measurement, target: TargetBaseline) -> dict[str, Any]:
    """What the measurement ran on for the knobs its assignment leaves alone: the per-namespace sysctls
    read back live in the sandbox (client side) and the target's host-only values (emulated per socket)."""
    from tuner.sandbox import Side

    live = {**target.host, **sb.run(Side.CLIENT, read_scope, Scope.NETNS)}
    if CONGESTION not in base.assignment and "TCP_CONGESTION" not in base.assignment:
        live.update(target.emulated_sysctls())  # set on every socket of the probe instead
    return {
        "source": target.source,
        "settings": {
            k: v for k, v in sorted(live.items()) if k not in base.assignment and k not in NOT_COPIED
        },
    }


def _measure(
    sb: Any,
    base: Measurement,
    options: SocketOptions,
    repeats: int,
    duration: float,
    target: TargetBaseline | None = None,
) -> Measurement:
    """Measure ``repeats`` repeats. The path's health is judged per repeat: a repeat the path itself
    spoiled (late packets, a saturated delay line, TUN drops: a busy machine) says nothing about the
    settings and is measured again, up to ``repeats`` times per measurement (a note says how many);
    the measurement is invalid only when the path stays unhealthy beyond that."""
    from tuner.kinds import spec  # the kinds' records name their probe modules: imported when used
    from tuner.sandbox import Side
    from tuner.sandbox.health import merge_health

    if target is not None:
        base = replace(base, baseline=_baseline_in(sb, base, target))
    workload, path = base.workload, base.path
    record = spec(workload.kind)
    env = RepeatEnv(
        sb, workload, path, options, duration, default_warmup(duration, path), Side.CLIENT, Side.SERVER
    )
    kept: list[Repeat] = []
    spoiled: list[str] = []
    fields: dict[str, Any] = {"backend": sb.backend}
    try:
        while len(kept) < repeats:
            r = _repeat(sb, record, env)
            # a dead delay line does not come back: its repeat is kept and makes the measurement invalid
            if not r.health.valid and r.health.helpers_alive and len(spoiled) < repeats:
                spoiled.append(r.health.reason or "the path was unhealthy")
                log.warning(
                    "probe.repeat_retry",
                    kind=workload.kind.value,
                    repeat=len(kept) + 1,
                    reason=spoiled[-1],
                )
                continue
            kept.append(r)
            log.debug(
                "probe.repeat",
                kind=workload.kind.value,
                repeat=len(kept),
                metrics=r.sample.metrics,
                bottlenecks=r.sample.bottlenecks,
                held=r.sample.held,
            )
    except Exception as exc:  # noqa: BLE001 - the run failed: report it with what was measured so far
        if (
            interrupt_behind(exc) is not None
        ):  # stopping a server the interrupt also hit failed: still an interrupt
            log.warning("probe.interrupted", kind=workload.kind.value, cleanup_error=_error_text(exc))
            reraise_interrupt(exc)
        log.warning("probe.failed", kind=workload.kind.value, repeat=len(kept) + 1, error=_error_text(exc))
        # the failed repeat's own health too: a dead delay line is often why it failed
        healths = [r.health for r in kept]
        with contextlib.suppress(Exception):
            healths.append(_judged(sb.health(), record))
        return replace(
            base,
            **fields,
            health=_health_dict(merge_health(healths)) if healths else {},
            repeats=len(kept),
            counters=_totals(kept),
            failed=True,
            valid=False,
            error=_error_text(exc),
            notes=_spoiled_note(spoiled),
        )
    m = _combine(base, kept, fields)
    return replace(m, notes=(*m.notes, *_spoiled_note(spoiled)))


def _spoiled_note(spoiled: list[str]) -> tuple[str, ...]:
    if not spoiled:
        return ()
    return (
        f"measured again: the path was unhealthy in {len(spoiled)} repeat(s) ({spoiled[0]}); "
        "those repeats were left out",
    )


def _judged(health: PathHealth, record: Any) -> PathHealth:
    """``health`` judged with the kind's own lateness limit (None: the path's default)."""
    limit = record.max_late_p99_ms
    return health.judged_with(limit) if limit is not None else health


@dataclass(frozen=True)
class Repeat:
    """One repeat: the probe's sample, the kernel counter deltas of each side, the path's health."""

    sample: Sample
    counters: dict[str, Counters]
    health: PathHealth


def _repeat(sb: Any, record: Any, env: RepeatEnv) -> Repeat:
    sides = {"client": env.client_side, "server": env.server_side}
    sb.reset_health()
    before = {name: sb.run(side, read_counters) for name, side in sides.items()}
    sample = record.probe(env)
    after = {name: sb.run(side, read_counters) for name, side in sides.items()}
    health = _judged(sb.health(), record)
    deltas = {name: delta(before[name], after[name]) for name in _SIDES}
    for metric, (side_name, counter) in record.counter_metrics.items():
        sample.metrics[metric] = float(deltas[side_name].get(counter, 0))
    return Repeat(sample, deltas, health)


def _totals(kept: list[Repeat]) -> dict[str, dict[str, int]]:
    totals: dict[str, Counters] = {side: {} for side in _SIDES}
    for r in kept:
        for name in _SIDES:
            for key, value in r.counters[name].items():
                totals[name][key] = totals[name].get(key, 0) + value
    return {k: dict(sorted(v.items())) for k, v in totals.items()}


def _combine(base: Measurement, kept: list[Repeat], fields: dict[str, Any]) -> Measurement:
    from tuner.sandbox.health import merge_health

    samples = [r.sample for r in kept]
    health = merge_health([r.health for r in kept])
    names = [n for n in METRICS if any(n in s.metrics for s in samples)]
    metrics = {n: summarize([s.metrics[n] for s in samples if n in s.metrics]) for n in names}
    reasons: list[str] = []
    if not health.valid:
        reasons.append(health.reason or "sandbox: the path was unhealthy")
    unemulated = SocketOptions.unemulated(base.assignment)
    if unemulated:
        reasons.append(
            f"probe: host knob(s) {', '.join(unemulated)} cannot be emulated in a sandbox; "
            "the measurement does not reflect them"
        )
    reasons += _limits([s.bottlenecks for s in samples])
    held = _limits([s.held for s in samples])
    notes = tuple(dict.fromkeys(n for s in samples for n in s.notes))
    computed = {
        n: statistics.median([s.computed[n] for s in samples if n in s.computed])
        for n in dict.fromkeys(n for s in samples for n in s.computed)
    }
    return replace(
        base,
        **fields,
        metrics=metrics,
        repeats=len(samples),
        computed=computed,
        counters=_totals(kept),
        health=_health_dict(health),
        valid=not reasons,
        invalid_reason="; ".join(reasons) if reasons else None,
        held_back="; ".join(held) if held else None,
        notes=notes,
    )


def _limits(per_repeat: list[dict[str, str]]) -> list[str]:
    """Each limit's first reason, with how many of the repeats it hit when there were several."""
    first: dict[str, str] = {}
    count: dict[str, int] = {}
    for limits in per_repeat:
        for key, reason in limits.items():
            first.setdefault(key, reason)
            count[key] = count.get(key, 0) + 1
    n = len(per_repeat)
    return [f"{first[k]} ({count[k]} of {n} repeats)" if n > 1 else first[k] for k in first]
