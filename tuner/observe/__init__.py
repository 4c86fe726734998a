"""Observation of live workloads: sockets, kernel counters, processes -> a workload signature."""
