"""Adapters: the only modules that import third-party libraries with unstable or unmaintained APIs.

``netlink`` wraps pyroute2, ``procs`` wraps psutil, ``skopt`` wraps scikit-optimize. Their types never
leave the adapter: callers get our dataclasses and plain values.
"""
