"""Prometheus metrics of the daemon, built from its state with prometheus_client.

The daemon publishes a snapshot after every state save (:meth:`MetricsServer.publish`); the HTTP thread
only ever serves the latest snapshot, so a scrape never reads state the main loop is changing.
``tuner status --prometheus`` renders the same families from the state file, for node_exporter's
textfile collector. prometheus_client stays in this module.

Names follow Prometheus conventions: ``tuner_`` prefix, base units (seconds, ratios), ``_total`` on
counters (added by the client library).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from tuner import __version__
from tuner.daemon.state import DaemonState
from tuner.logs import get_logger

__all__ = ["METRIC_NAMES", "MetricsServer", "families", "render"]

log = get_logger(__name__)

# (name as exposed, type, help): the README's metrics table is generated from the same list in a test
METRIC_NAMES: tuple[tuple[str, str, str], ...] = (
    ("tuner_info", "gauge", "always 1; labels: version, mode (recommend/apply), netns"),
    (
        "tuner_searches_total",
        "counter",
        "searches finished, by workload kind and result "
        "(profile: a significant gain; no_gain; failed; stopped)",
    ),
    ("tuner_trials_total", "counter", "trials measured by searches, by kind"),
    (
        "tuner_invalid_trials_total",
        "counter",
        "trials whose measurement was invalid (the emulated path or the "
        "load generator was the bottleneck), by kind",
    ),
    ("tuner_search_duration_seconds", "summary", "wall time of finished searches, by kind (_sum and _count)"),
    ("tuner_search_running", "gauge", "1 while a search runs"),
    (
        "tuner_profile_gain_ratio",
        "gauge",
        "times better per metric of each written profile (1 = no change), labels: profile, metric",
    ),
    ("tuner_profile_significant", "gauge", "1 if the profile's gain was confirmed beyond noise, by profile"),
    ("tuner_service_symptom", "gauge", "1 per symptom seen on a service in the last observation"),
    ("tuner_services", "gauge", "services tracked"),
    ("tuner_knobs_owned", "gauge", "knobs the daemon applied and still owns"),
    ("tuner_knobs_manual", "gauge", "knobs marked manual (changed by someone else; left alone)"),
    ("tuner_knobs_applied_total", "counter", "knob writes by guarded applies"),
    ("tuner_guard_rollbacks_total", "counter", "applies rolled back, by outcome"),
    ("tuner_path_late_p99_seconds", "gauge", "emulated path of the last search: p99 packet lateness"),
    ("tuner_path_dropped_packets", "gauge", "emulated path of the last search: TUN and queue drops"),
    ("tuner_path_cpu_seconds", "gauge", "emulated path of the last search: CPU time of the delay line"),
    ("tuner_loop_lag_seconds", "gauge", "how late the last observation tick ran against its schedule"),
)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def families(state: DaemonState, *, loop_lag: float | None = None) -> list[Any]:
    """Every metric family of the daemon's ``state`` (and its loop lag when it runs)."""
    out: list[Any] = []
    info = GaugeMetricFamily("tuner_info", "tuner daemon", labels=["version", "mode", "netns"])
    info.add_metric([__version__, state.mode or "unknown", state.netns or ""], 1)
    out.append(info)

    stats = state.stats
    searches = CounterMetricFamily("tuner_searches", "searches finished", labels=["kind", "result"])
    for kind, by_result in sorted(stats.searches.items()):
        for result, n in sorted(by_result.items()):
            searches.add_metric([kind, result], n)
    trials = CounterMetricFamily("tuner_trials", "trials measured by searches", labels=["kind"])
    invalid = CounterMetricFamily("tuner_invalid_trials", "trials on an invalid measurement", labels=["kind"])
    duration = SummaryMetricFamily(
        "tuner_search_duration_seconds", "wall time of finished searches", labels=["kind"]
    )
    for kind in sorted(set(stats.trials) | set(stats.search_seconds)):
        trials.add_metric([kind], stats.trials.get(kind, 0))
        invalid.add_metric([kind], stats.invalid_trials.get(kind, 0))
        duration.add_metric(
            [kind],
            count_value=sum(stats.searches.get(kind, {}).values()),
            sum_value=stats.search_seconds.get(kind, 0.0),
        )
    out += [searches, trials, invalid, duration]
    out.append(
        GaugeMetricFamily(
            "tuner_search_running", "1 while a search runs", value=1 if state.search is not None else 0
        )
    )

    gain = GaugeMetricFamily(
        "tuner_profile_gain_ratio", "times better per metric", labels=["profile", "metric"]
    )
    significant = GaugeMetricFamily("tuner_profile_significant", "gain beyond noise", labels=["profile"])
    for rec in state.profiles:
        for metric, value in sorted(dict(rec.summary.get("gains") or {}).items()):
            if (v := _finite(value)) is not None:
                gain.add_metric([rec.name, str(metric)], v)
        significant.add_metric([rec.name], 1 if rec.summary.get("significant") else 0)
    out += [gain, significant]

    symptoms = GaugeMetricFamily(
        "tuner_service_symptom", "symptom seen in the last observation", labels=["service", "symptom"]
    )
    for svc in state.last_observation.get("services") or []:
        if isinstance(svc, dict):
            for sym in svc.get("symptoms") or []:
                name = sym.get("name") if isinstance(sym, dict) else sym
                symptoms.add_metric([str(svc.get("key", "?")), str(name)], 1)
    out.append(symptoms)
    out.append(GaugeMetricFamily("tuner_services", "services tracked", value=len(state.services)))
    out.append(GaugeMetricFamily("tuner_knobs_owned", "knobs applied and owned", value=len(state.owned)))
    out.append(GaugeMetricFamily("tuner_knobs_manual", "knobs marked manual", value=len(state.manual)))
    out.append(
        CounterMetricFamily(
            "tuner_knobs_applied", "knob writes by guarded applies", value=stats.knobs_applied
        )
    )
    rollbacks = CounterMetricFamily("tuner_guard_rollbacks", "applies rolled back", labels=["outcome"])
    for outcome, n in sorted(stats.rollbacks.items()):
        rollbacks.add_metric([outcome], n)
    out.append(rollbacks)

    health = dict(state.profiles[-1].summary.get("path_health") or {}) if state.profiles else {}
    for name, key, scale in (
        ("tuner_path_late_p99_seconds", "late_p99_ms", 1e-3),
        ("tuner_path_dropped_packets", "dropped", 1.0),
        ("tuner_path_cpu_seconds", "cpu_s", 1.0),
    ):
        if (v := _finite(health.get(key))) is not None:
            out.append(GaugeMetricFamily(name, f"emulated path of the last search ({key})", value=v * scale))
    if loop_lag is not None:
        out.append(
            GaugeMetricFamily(
                "tuner_loop_lag_seconds", "lateness of the last observation tick", value=max(loop_lag, 0.0)
            )
        )
    return out


class _Snapshot(Collector):
    def __init__(self) -> None:
        self.latest: Sequence[Any] = ()

    def collect(self) -> Iterable[Any]:
        return list(self.latest)


def render(state: DaemonState, *, loop_lag: float | None = None) -> str:
    """The Prometheus text exposition of ``state``."""
    registry = CollectorRegistry(auto_describe=False)
    snap = _Snapshot()
    snap.latest = families(state, loop_lag=loop_lag)
    registry.register(snap)
    return generate_latest(registry).decode()


class MetricsServer:
    """``/metrics`` over HTTP on ``host:port`` in a daemon thread, serving the last published snapshot."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._snap = _Snapshot()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._snap)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @classmethod
    def serve(
        cls, listen: tuple[str, int] | None, state: DaemonState, *, loop_lag: float | None = None
    ) -> MetricsServer | None:
        """A server on ``listen`` publishing ``state`` (None: none configured, or the address cannot be
        bound, which is noted in the state's problems: not a reason to stop tuning)."""
        if listen is None:
            return None
        server = cls(*listen)
        try:
            server.start()
        except OSError as exc:
            log.error("metrics.bind_failed", address=f"{listen[0]}:{listen[1]}", error=str(exc))
            state.note_problem(f"metrics: cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}")
            return None
        server.publish(state, loop_lag=loop_lag)
        return server

    def start(self) -> None:
        """Bind and serve; raises ``OSError`` when the address cannot be bound."""
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self._registry)
        log.info("metrics.listening", address=f"{self.host}:{self.port}")

    def publish(self, state: DaemonState, *, loop_lag: float | None = None) -> None:
        self._snap.latest = tuple(
            families(state, loop_lag=loop_lag)
        )  # one reference swap: atomic for readers

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
