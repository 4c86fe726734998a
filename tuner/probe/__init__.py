"""Probes: replay a workload in a sandbox under an assignment and return a Measurement."""

from tuner.probe.measurement import METRICS, Better, Measurement, MetricInfo, Stat, summarize

__all__ = ["METRICS", "Better", "Measurement", "MetricInfo", "Stat", "summarize"]
