"""The emulator's ceiling: the rate one TCP stream actually gets across an emulated path on this machine.

A measured figure, not a model: a sandbox with the path asked for (or a very high cap) carries one bulk
TCP stream (cubic, buffers far above the bandwidth-delay product) for a couple of seconds; the ceiling
is what the path delivered in the second half, with the line's health. It depends on the machine's
load at the time, so callers measure it when they need it (`tuner doctor`, the start of a search) and
record it with the run.

    c = measure_ceiling(20e9)          # what can this machine emulate at all right now?
    c.holds(400e6)                     # can it carry a 400 Mbit/s path?
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from tuner.logs import get_logger
from tuner.sandbox.layout import ADDRESSES, Side

__all__ = ["HOLD_SHARE", "PROBE_RATE_BPS", "Ceiling", "measure_ceiling"]

log = get_logger(__name__)

HOLD_SHARE = 0.9  # a path "holds" a rate when it delivers at least this share of it
PROBE_RATE_BPS = 20e9  # the cap used to find the highest rate the emulator can carry
_PORT = 5299
_BUF = 64 << 20
_SYSCTLS = {"net.ipv4.tcp_rmem": (4096, 131072, _BUF), "net.ipv4.tcp_wmem": (4096, 16384, _BUF)}


@dataclass(frozen=True)
class Ceiling:
    """What one stream got across the emulated path (IP bits per second, second half of the run)."""

    requested_bps: float  # the cap of the path the stream ran on
    delivered_bps: float
    backend: str
    offload: bool
    line_cpu_share: float  # busiest forwarder, share of one core
    valid: bool  # the path's own health verdict for the run
    reason: str | None
    rtt: float
    seconds: float

    def holds(self, rate_bps: float) -> bool:
        """Whether the emulator carried ``rate_bps`` (measured at that rate, or above it)."""
        return (
            self.valid
            and self.delivered_bps >= HOLD_SHARE * min(rate_bps, self.requested_bps)
            and (rate_bps <= self.requested_bps or self.delivered_bps >= HOLD_SHARE * rate_bps)
        )

    def describe(self) -> str:
        text = (
            f"one TCP stream carried {self.delivered_bps / 1e6:,.0f} Mbit/s across a {self.backend} path "
            f"capped at {self.requested_bps / 1e6:,.0f} Mbit/s (RTT {self.rtt * 1e3:g} ms; busiest "
            f"delay-line process {self.line_cpu_share * 100:.0f}% of a core"
            f"{', TUN offloads' if self.offload else ''})"
        )
        if self.valid:
            return text
        # the reason's first clause ("sandbox: the delay line was saturated"): its explanation, which
        # can run to three lines, is what the doctor and recommend print next (the full reason is in
        # to_dict); a long one pushed `tuner doctor` past one screen on a loaded machine
        return f"{text}; the run was invalid: {(self.reason or 'unknown').split(' (', 1)[0]}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sink() -> int:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ADDRESSES[Side.SERVER], _PORT))
    ls.listen(1)
    conn, _ = ls.accept()
    buf = bytearray(1 << 20)
    total = 0
    while n := conn.recv_into(buf):
        total += n
    return total


def _source(seconds: float) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            s = socket.create_connection((ADDRESSES[Side.SERVER], _PORT), timeout=30)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    data = b"\0" * (1 << 18)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(data)
    s.close()


def measure_ceiling(
    rate_bps: float = PROBE_RATE_BPS,
    *,
    rtt: float = 0.02,
    seconds: float = 3.0,
    backend: str | None = None,
    attempts: int = 2,
) -> Ceiling:
    """Run one bulk stream across a path of ``rate_bps`` and ``rtt`` and report what it carried.

    A run whose path health was invalid (a moment of overload: late packets) is run again, up to
    ``attempts`` runs in all, like any probe run; the last one is reported."""
    c = _measure_once(rate_bps, rtt, seconds, backend)
    for _ in range(attempts - 1):
        if c.valid:
            break
        log.warning("sandbox.ceiling_retry", reason=c.reason)
        c = _measure_once(rate_bps, rtt, seconds, backend)
    return c


def _measure_once(rate_bps: float, rtt: float, seconds: float, backend: str | None) -> Ceiling:
    from tuner.sandbox.sandbox import Sandbox
    from tuner.workload import NetworkPath as Path

    with Sandbox(
        Path(rtt=rtt, rate_bps=rate_bps), backend=backend, client_sysctls=_SYSCTLS, server_sysctls=_SYSCTLS
    ) as sb:
        sink = sb.spawn(Side.SERVER, _sink)
        source = sb.spawn(Side.CLIENT, _source, seconds)
        time.sleep(seconds / 2)
        sb.reset_health()
        source.result(seconds + 30)
        health = sb.health()
        sink.result(30)
    c = Ceiling(
        rate_bps,
        health.delivered_bps,
        health.backend,
        health.offload,
        health.line_cpu_share,
        health.valid,
        health.reason,
        rtt,
        seconds,
    )
    log.info(
        "sandbox.ceiling",
        requested=rate_bps,
        delivered=round(c.delivered_bps),
        valid=c.valid,
        line_cpu=round(c.line_cpu_share, 2),
        backend=c.backend,
    )
    return c
