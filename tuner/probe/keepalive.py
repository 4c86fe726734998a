"""keepalive: idle connections over a lossy path, then a peer that silently disappears.

The server is the survivor: it accepts ``idle_connections`` connections and gets the assignment's
dead-peer options (``SO_KEEPALIVE``, ``TCP_KEEPIDLE``/``INTVL``/``CNT``, ``TCP_USER_TIMEOUT``) on them;
the client only holds its ends open. Two phases per repeat:

1. **Healthy** (the risk): the peer is alive and the path has its loss (``Path.loss``; the CLI gives
   this kind a realistic 1% unless ``--loss`` says otherwise). A connection the survivor drops here
   (``ETIMEDOUT``: its keepalive probes or their ACKs were lost ``TCP_KEEPCNT`` times in a row) is a
   **false kill**, counted in ``false_kills``. The phase lasts ``duration`` (on a path without loss, or
   with keepalive off: nothing can kill an idle connection then), or long enough for about
   :data:`HEALTHY_PROBES` keepalive probes per connection and the timers' give-up after a lost one
   (planned from the settings read back from the socket; what is scored is what happened). When that
   does not fit in :data:`PHASE_CAP`, ``false_kills`` is not reported (a note says so) and the
   objective treats the risk as unknown.
2. **Dead peer** (the benefit): the probe partitions the path (``Sandbox.set_partitioned``) and the
   server waits for its surviving sockets to fail, for :func:`window` seconds: ten durations, at least
   :data:`WINDOW_MIN` (which covers every setting of the search space that detects at all, so each
   is measured, not modelled). ``detect_s`` is the median over the connections of the time from the
   partition to the socket error; a connection not noticed within the window counts as the window:
   a **measured lower bound**, marked by ``detected_fraction`` < 1 and a note. The window is the same
   for every setting, so a lower bound ranks behind every detection.

``healthy_keepalive_probes`` is the exposure behind ``false_kills``: the keepalive probes the survivor's
namespace sent during the healthy phase (``TcpExt.TCPKeepAlive``). A setting whose risk per probe is
far below one over that count can show no false kill and still kill a live connection now and then
over hours of idle time.

``keepalive_packets_per_conn_hour`` is **computed**, not measured: 3600 / the effective idle time read
back from the survivor's socket with ``getsockopt(TCP_KEEPIDLE)`` (the kernel answers with the sysctl
``tcp_keepalive_time`` when the option is not set), 0 with keepalive off. A short probe cannot wait
through hour-scale idle times. It goes into the measurement's ``computed`` figures (no interval);
the probes actually sent are in the counters (``TcpExt.TCPKeepAlive`` of the server namespace).

Capacity: not a throughput probe. Connections open 64 at a time, with the path's loss paused
(``Sandbox.set_lossless``: the setup is not what is measured, and each lost SYN would cost a 1 s
retransmission); a repeat lasts the healthy phase plus the detection time (at most the window).
"""

from __future__ import annotations

import errno
import math
import selectors
import socket
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from tuner.knobs import Value, get_knob
from tuner.logs import get_logger
from tuner.observe.counters import read_counters
from tuner.probe.base import (
    DEFAULT_BACKLOG,
    RepeatEnv,
    Sample,
    accept_many,
    connect_many,
    open_listener,
    start_server,
    stop_server,
)
from tuner.probe.board import Board
from tuner.probe.sockopts import SocketOptions
from tuner.workload import Workload

__all__ = [
    "HEALTHY_PROBES",
    "PHASE_CAP",
    "WINDOW_MIN",
    "SurvivorReport",
    "Timers",
    "healthy_phase",
    "hold",
    "risk_unjudged",
    "run_repeat",
    "serve",
    "socket_timers",
    "timers_in_effect",
    "window",
]

log = get_logger(__name__)

_PROBES_SENT = "TcpExt.TCPKeepAlive"
HEALTHY_PROBES = 3  # keepalive probes per connection the healthy phase aims to cover
PHASE_CAP = 30.0  # seconds: the healthy phase is not stretched beyond this for settings that act later
# The dead-peer window covers every setting of the keepalive search space that can detect at all (the
# slowest, TCP_KEEPIDLE 3 + TCP_KEEPINTVL 2 x TCP_KEEPCNT 4 = 11 s, with margin)
WINDOW_MIN = 18.0


@dataclass(frozen=True)
class Timers:
    """The dead-peer timers in effect on the survivor's sockets, as the kernel reports them."""

    keepalive_on: bool = False
    idle_s: int = 0
    intvl_s: int = 0
    count: int = 0
    user_timeout_ms: int = 0

    @property
    def rounds(self) -> int:
        """Unanswered keepalive probes after which the timers give up on the peer. With a user timeout
        the keepalive timer ignores TCP_KEEPCNT: it gives up at its first firing after a probe went out
        once the user timeout has passed since the peer was last heard."""
        if self.user_timeout_ms:
            return max(1, math.ceil((self.user_timeout_ms / 1e3 - self.idle_s) / max(self.intvl_s, 1)))
        return self.count

    @property
    def detection_s(self) -> float:
        """When the timers should notice a dead peer (a plan for how long to wait, never a score)."""
        if not self.keepalive_on:
            return self.user_timeout_ms / 1e3 if self.user_timeout_ms else float("inf")
        return self.idle_s + self.intvl_s * self.rounds


def window(duration: float) -> float:
    """How long the survivor waits for a dead peer after the partition: ten durations, at least
    :data:`WINDOW_MIN`. The same for every setting of a search, so a peer not noticed within it (a lower
    bound of ``window`` s) always ranks behind every peer that was noticed: a per-setting window would
    let a short wait's lower bound beat a longer measured detection."""
    return max(10.0 * duration, WINDOW_MIN)


def healthy_phase(duration: float, timers: Timers, loss: float) -> tuple[float, bool]:
    """How long the connections stay up over the lossy path before the partition, and whether that is
    long enough to see the risk: with keepalive on, the first :data:`HEALTHY_PROBES` probes and the
    timers' give-up after a lost one (idle + interval x count) must fit in :data:`PHASE_CAP`. Without
    keepalive (or without loss) an idle connection has nothing that can kill it: ``duration`` serves."""
    if not timers.keepalive_on or loss <= 0:
        return duration, True
    planned = timers.detection_s + HEALTHY_PROBES * max(timers.idle_s, 1)
    if planned > PHASE_CAP:
        return duration, False
    return max(duration, planned), True


# the kernel's defaults, for a namespace whose sysctls are not known
_SYSCTL_DEFAULTS = {
    "net.ipv4.tcp_keepalive_time": 7200,
    "net.ipv4.tcp_keepalive_intvl": 75,
    "net.ipv4.tcp_keepalive_probes": 9,
}


def timers_in_effect(values: Mapping[str, Value | None]) -> Timers:
    """The timers a survivor's socket runs with under ``values`` (socket options and the namespace's
    sysctls, by knob name): a timer option that is not set inherits its sysctl, as in the kernel."""

    def timer(option: str) -> int:
        v = values.get(option)
        if v is None:  # the sysctl the catalogue says the option inherits (Knob.unset)
            sysctl = cast(str, get_knob(option).unset)
            v = values.get(sysctl, _SYSCTL_DEFAULTS[sysctl])
        return int(cast(int, v))

    return Timers(
        bool(values.get("SO_KEEPALIVE")),
        timer("TCP_KEEPIDLE"),
        timer("TCP_KEEPINTVL"),
        timer("TCP_KEEPCNT"),
        int(cast(int, values.get("TCP_USER_TIMEOUT") or 0)),
    )


def risk_unjudged(values: Mapping[str, Value | None], loss: float) -> tuple[str, str] | None:
    """(knob, why) when a measurement of ``values`` over a path with ``loss`` could not show the timers'
    risk (:func:`healthy_phase`): the objective refuses every such measurement, so a search need not make
    it. The knob named is the timer that takes most of the time."""
    timers = timers_in_effect(values)
    if healthy_phase(0.0, timers, loss)[1]:
        return None
    idle = timers.idle_s + HEALTHY_PROBES * max(timers.idle_s, 1)
    knob = "TCP_KEEPIDLE" if idle >= timers.intvl_s * timers.rounds else "TCP_KEEPINTVL"
    return knob, (
        f"the probe cannot judge this setting's risk: its timers (idle {timers.idle_s} s, interval "
        f"{timers.intvl_s} s, {timers.rounds} probes) need {idle + timers.intvl_s * timers.rounds:,} s "
        f"for {HEALTHY_PROBES} keepalive probes and a give-up, the healthy phase lasts at most {PHASE_CAP:g} s"
    )


def socket_timers(sock: socket.socket) -> Timers:
    """The timers in effect on ``sock``, as the kernel reports them (an unset option: its sysctl)."""
    return Timers(
        bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


@dataclass(frozen=True)
class SurvivorReport:
    detect_times: list[float]  # seconds from the partition to each socket's error
    undetected: int  # connections still open when the window closed
    window_s: float  # how long the survivor waited after the partition
    timers: Timers
    errors: dict[str, int] = field(default_factory=dict)  # errno name -> count
    false_kills: int = 0  # sockets that failed with a timeout while the peer was alive
    early: int = 0  # sockets that ended otherwise (EOF, reset) while the peer was alive
    healthy_s: float = 0.0  # how long the healthy phase lasted
    risk_seen: bool = True  # the healthy phase was long enough for the timers to give up
    connections: int = 0
    healthy_probes: int = 0  # keepalive probes the survivor sent in the healthy phase (TcpExt.TCPKeepAlive)


def serve(
    workload: Workload, options: SocketOptions, board: Board, host: str, duration: float, loss: float
) -> SurvivorReport:
    listener, _ = open_listener(host, options, max(DEFAULT_BACKLOG, workload.idle_connections))
    board["port"] = listener.getsockname()[1]
    conns = accept_many(listener, max(workload.idle_connections, 1), options, dead_peer=True)
    listener.close()
    timers = socket_timers(conns[0])
    wait_s = window(duration)
    board["healthy_s"], risk_seen = healthy_phase(duration, timers, loss)
    board["accepted"] = len(conns)
    detect: list[float] = []
    errors: dict[str, int] = {}
    false_kills = early = 0
    probes_before = read_counters().get(_PROBES_SENT, 0)
    probes = -1
    with selectors.DefaultSelector() as sel:
        for conn in conns:
            sel.register(conn, selectors.EVENT_READ)
        open_count = len(conns)
        while open_count and not board["stop"]:
            t0 = board["partitioned_at"]
            if t0 and probes < 0:  # the healthy phase is over: the keepalive probes it took
                probes = read_counters().get(_PROBES_SENT, 0) - probes_before
            if t0 and time.monotonic() > t0 + wait_s:
                break
            for key, _ in sel.select(0.02):
                conn = cast(socket.socket, key.fileobj)
                try:
                    data = conn.recv(4096)
                    name = "EOF" if not data else None
                except OSError as exc:
                    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
                if name is None:
                    continue  # the client sent something: not expected, but harmless
                now = time.monotonic()
                t0 = board["partitioned_at"]
                if t0:
                    detect.append(now - t0)
                elif name == "ETIMEDOUT":
                    false_kills += 1
                else:
                    early += 1
                errors[name] = errors.get(name, 0) + 1
                sel.unregister(conn)
                open_count -= 1
    for conn in conns:
        conn.close()
    if probes < 0:
        probes = read_counters().get(_PROBES_SENT, 0) - probes_before
    return SurvivorReport(
        detect,
        open_count,
        wait_s,
        timers,
        errors,
        false_kills,
        early,
        board["healthy_s"],
        risk_seen,
        len(conns),
        probes,
    )


def hold(workload: Workload, options: SocketOptions, board: Board, host: str) -> int:
    """The client: open the idle connections and keep them until ``board["stop"]``."""
    conns = connect_many(
        max(workload.idle_connections, 1), host, int(board["port"]), options, dead_peer=False
    )
    try:
        board["connected"] = len(conns)
        while not board["stop"]:
            time.sleep(0.02)
    finally:
        for conn in conns:
            conn.close()
    return len(conns)


def _heal(sandbox: Any, *, partitioned: bool, lossless: bool) -> Exception | None:
    """Put the path back (heal the partition, resume the loss), trying both; the first error, which the
    caller raises once its servers are stopped (logged only when another error is on its way already)."""
    error: Exception | None = None
    for on, undo in ((partitioned, sandbox.set_partitioned), (lossless, sandbox.set_lossless)):
        if on:
            try:
                undo(False)
            except Exception as exc:  # noqa: BLE001 - kept for the caller, after the other undo
                log.warning("probe.path_restore_failed", error=f"{type(exc).__name__}: {exc}")
                error = error or exc
    return error


def run_repeat(env: RepeatEnv) -> Sample:
    board = Board("port", "stop", "accepted", "connected", "partitioned_at", "healthy_s")
    w = env.workload
    # the connections open with the path's loss paused: their setup is not what is measured, and over
    # a lossy path each lost SYN or SYN-ACK costs a 1 s retransmission (512 connections took ~6 s of a
    # repeat at 1% loss); the healthy phase starts with the loss back on
    env.sandbox.set_lossless(True)
    lossless = True
    server = None
    client = None
    partitioned = False
    try:
        server = start_server(
            env, board, serve, w, env.options, board, env.server_host, env.duration, env.path.loss
        )
        client = start_server(
            env,
            board,
            hold,
            w,
            env.options,
            board,
            env.server_host,
            ready="connected",
            role="client",
            side=env.client_side,
        )
        board.wait("accepted", timeout=10.0, alive=server.alive)
        env.sandbox.set_lossless(False)
        lossless = False
        time.sleep(board["healthy_s"] or env.duration)  # the healthy idle phase, over the lossy path
        env.sandbox.set_partitioned(True)
        partitioned = True
        board["partitioned_at"] = time.monotonic()
        report: SurvivorReport = stop_server(server, None, timeout=window(env.duration) + 10.0)
    finally:
        heal_error = _heal(env.sandbox, partitioned=partitioned, lossless=lossless)
        board["stop"] = 1
        if client is not None:
            stop_server(client, board, role="client")
        if server is not None and server.alive():
            stop_server(server, board)
    if heal_error is not None:  # (with another error on its way, that one is raised and this one logged)
        raise heal_error
    sample = Sample()
    wait_s = report.window_s
    n = len(report.detect_times) + report.undetected
    times = report.detect_times + [wait_s] * report.undetected
    if times:
        sample.metrics["detect_s"] = statistics.median(times)
        sample.metrics["detected_fraction"] = len(report.detect_times) / n
    t = report.timers
    if report.risk_seen or report.false_kills:
        sample.metrics["false_kills"] = float(report.false_kills)
        sample.metrics["healthy_keepalive_probes"] = float(report.healthy_probes)
    else:
        sample.notes.append(
            f"false kills not measured: these timers (idle {t.idle_s} s, interval {t.intvl_s} s x "
            f"{t.count}, user timeout {t.user_timeout_ms} ms) give up on a live peer later than "
            f"the probe's {PHASE_CAP:g} s healthy phase can show"
        )
    sample.computed["keepalive_packets_per_conn_hour"] = (
        3600.0 / t.idle_s if t.keepalive_on and t.idle_s > 0 else 0.0
    )
    if report.false_kills:
        sample.notes.append(
            f"{report.false_kills} of {report.connections} healthy connections killed in "
            f"{report.healthy_s:g} s over the lossy path (keepalive probes or their ACKs lost "
            f"{t.count} time(s) in a row)"
        )
    if report.undetected:
        sample.notes.append(
            f"{report.undetected} of {n} connections: dead peer not detected within the "
            f"{wait_s:g} s window (detect_s counts them as {wait_s:g} s: a lower bound)"
        )
    if report.errors:
        sample.notes.append(
            "socket errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.errors.items()))
        )
    if report.early:
        sample.bottleneck(
            "early failures",
            f"probe: {report.early} connections ended before the partition (not by a timeout)",
        )
    return sample
