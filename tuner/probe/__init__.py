"""Probes: replay a workload in a sandbox under an assignment and return a Measurement.

    from tuner.probe import run_probe, Measurement, Stat, METRICS
    m = run_probe(workload, path, assignment, repeats=3, duration=1.0, sandbox=None)

One module per workload kind (rr, bulk, burst, udp, keepalive, memory), each with its server and
client programs and its documented capacity on the development machine; :mod:`tuner.probe.sockopts`
applies an assignment's socket options; :mod:`tuner.probe.runner` does repeats, counters, health and
validity.
"""

from tuner.probe.measurement import METRICS, Better, Measurement, MetricInfo, Stat, summarize
from tuner.probe.runner import run_probe
from tuner.probe.sockopts import HostLimits, SocketOptions

__all__ = [
    "METRICS",
    "Better",
    "HostLimits",
    "Measurement",
    "MetricInfo",
    "SocketOptions",
    "Stat",
    "run_probe",
    "summarize",
]
