"""Adapters: the only modules that import third-party libraries with unstable or unmaintained APIs.

``sockdiag`` (sock_diag dumps, for tuner.observe) and ``rtnl`` (namespaces, links, qdiscs, for
tuner.sandbox) wrap pyroute2, ``procs`` wraps psutil, ``skopt`` wraps scikit-optimize. Their types never
leave the adapter: callers get our dataclasses (tuner.kernel's socket records among them) and plain
values. Adapters import nothing of tuner above tuner.kernel, tuner.errors and tuner.logs.
"""
