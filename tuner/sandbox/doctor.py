"""What this machine supports for tuner, checked for real (``tuner doctor``).

Each :class:`Check` says what was found, what it means for tuner, and the fix for a missing piece.
Checks that need root and namespaces run inside a throwaway sandbox; nothing on the host changes.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from tuner.errors import TunerError
from tuner.kernel import TCP_INFO
from tuner.knobs import PROC_SYS

__all__ = [
    "ESSENTIAL",
    "TCP_INFO_FIELDS",
    "Check",
    "Status",
    "essential_failures",
    "kernel_config",
    "run_checks",
    "tcp_info_length",
]


class Status(Enum):
    OK = "ok"
    NOTE = "note"  # works, through a fallback or with a limit worth knowing
    MISSING = "missing"  # an optional capability is absent
    FAIL = "FAIL"  # tuner cannot do its job without this


ESSENTIAL = ("root", "namespaces", "path emulation")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    found: str
    meaning: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


# (name, offset, size) in struct tcp_info (offsets from tuner.kernel's table), grouped by what they tell tuner
TCP_INFO_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    (
        "rtt/rttvar/cwnd/retrans",
        *TCP_INFO.span("rtt_us", "total_retrans"),
        "round-trip time and congestion window (any kernel)",
    ),
    (
        "delivery_rate",
        *TCP_INFO.span("delivery_rate", "delivery_rate"),
        "the rate the connection actually delivers (4.9+)",
    ),
    (
        "busy_time/rwnd_limited/sndbuf_limited",
        *TCP_INFO.span("busy_time_us", "sndbuf_limited_us"),
        "direct evidence that a receive window or send buffer held a connection back (4.10+)",
    ),
    (
        "bytes_sent/bytes_retrans",
        *TCP_INFO.span("bytes_sent", "bytes_retrans"),
        "retransmitted share in bytes (4.19+)",
    ),
    ("snd_wnd", *TCP_INFO.span("snd_wnd", "snd_wnd"), "the peer's advertised window (5.4+)"),
)

_NETEM_FIX = (
    "for in-kernel emulation load sch_netem (`modprobe sch_netem`; on Debian it ships with the "
    "kernel image; custom kernels need CONFIG_NET_SCH_NETEM)"
)


def kernel_config(option: str) -> str | None:
    """The value of ``option`` in /proc/config.gz ("y", "m", "n" for '# ... is not set'), or None."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            for line in f:
                if line.startswith(option + "="):
                    return line.strip().split("=", 1)[1]
                if line.startswith(f"# {option} is not set"):
                    return "n"
    except OSError:
        return None
    return None


def tcp_info_length() -> int:
    """Bytes of tcp_info this kernel fills for a connected socket (over loopback, in the caller's namespace)."""
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        with socket.socket() as c:
            c.settimeout(2)
            c.connect(ls.getsockname())
            conn, _ = ls.accept()
            with conn:
                return len(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512))


def _read_words(name: str) -> list[str]:
    try:
        return (PROC_SYS / name.replace(".", "/")).read_text().split()
    except OSError:
        return []


def _check_root() -> Check:
    if os.geteuid() == 0:
        return Check("root", Status.OK, "running as root", "sandboxes can be created and profiles applied")
    return Check(
        "root",
        Status.FAIL,
        f"running as uid {os.geteuid()}",
        "tuner needs CAP_NET_ADMIN and CAP_SYS_ADMIN for namespaces, and root to apply profiles",
        "run it with sudo, or as root",
    )


def _check_congestion() -> Check:
    available = _read_words("net.ipv4.tcp_available_congestion_control")
    allowed = _read_words("net.ipv4.tcp_allowed_congestion_control")
    default = " ".join(_read_words("net.ipv4.tcp_congestion_control")) or "?"
    found = (
        f"available: {' '.join(available) or '?'}; allowed: {' '.join(allowed) or '?'}; default: {default}"
    )
    missing = [a for a in ("cubic", "bbr") if a not in available]
    not_allowed = [a for a in available if a not in allowed and a != default]
    meaning = "searches try the available algorithms"
    if not_allowed:
        meaning += (
            f"; {', '.join(not_allowed)} cannot be a namespace default (not allowed) but tuner, as root, "
            "still tries it per socket (TCP_CONGESTION)"
        )
    fixes = []
    if missing:
        fixes.append(f"to try {', '.join(missing)}: {'; '.join('modprobe tcp_' + m for m in missing)}")
    if not_allowed:
        fixes.append(
            "to allow all as namespace defaults (host-wide; tuner never changes it): sysctl -w "
            f"net.ipv4.tcp_allowed_congestion_control='{' '.join(available)}'"
        )
    status = Status.NOTE if missing or not_allowed else Status.OK
    return Check("congestion control", status, found, meaning, "; ".join(fixes) or None)


def _check_tcp_info(length: int | None, error: str | None) -> Check:
    if length is None:
        return Check(
            "tcp_info",
            Status.MISSING,
            f"could not read: {error}",
            "without tcp_info tuner cannot tell why a connection is slow",
            "needs root and a TCP stack",
        )
    present = [name for name, off, size, _ in TCP_INFO_FIELDS if length >= off + size]
    absent = [(name, why) for name, off, size, why in TCP_INFO_FIELDS if length < off + size]
    found = f"{length} bytes; has {', '.join(present)}"
    if absent:
        return Check(
            "tcp_info",
            Status.NOTE,
            found,
            "missing " + "; ".join(f"{n}: {w}" for n, w in absent),
            "a newer kernel (5.4 or later) reports every field tuner reads",
        )
    return Check(
        "tcp_info", Status.OK, found, "every field tuner reads is there, incl. buffer-limited evidence"
    )


def _check_firewall_tools() -> Check:
    tools = [t for t in ("nft", "iptables") if shutil.which(t)]
    if tools:
        return Check(
            "nftables/iptables",
            Status.OK,
            f"found {', '.join(tools)}",
            "not needed by tuner: dead-peer tests drop packets in tuner's own link",
        )
    return Check(
        "nftables/iptables",
        Status.NOTE,
        "neither nft nor iptables is installed",
        "not needed by tuner: dead-peer tests drop packets in tuner's own link (delay line or "
        "static neighbour entries)",
        "optional: apt-get install nftables",
    )


def _sandbox_checks() -> list[Check]:
    """Namespaces, netem, TUN and tcp_info, checked inside a throwaway sandbox."""
    from tuner.sandbox.layout import Side
    from tuner.sandbox.registry import stale_sandboxes
    from tuner.sandbox.sandbox import Sandbox, netem_available
    from tuner.sandbox.tun import open_tun

    checks: list[Check] = []
    t0 = time.monotonic()
    try:
        sb = Sandbox().open()
    except (TunerError, OSError) as exc:
        hint = (
            getattr(exc, "hint", None) or "check that /run/netns is writable and the kernel has CONFIG_NET_NS"
        )
        return [
            Check(
                "namespaces",
                Status.FAIL,
                f"could not create a sandbox: {exc}",
                "tuner cannot measure anything without network namespaces",
                hint,
            )
        ]
    try:
        created = time.monotonic() - t0
        try:
            netem = netem_available(sb)
            netem_error = None
        except (TunerError, OSError) as exc:
            netem, netem_error = False, str(exc)
        try:
            sb.run(Side.CLIENT, _tun_probe, open_tun)
            tun_ok, tun_error = True, None
        except (TunerError, OSError) as exc:
            tun_ok, tun_error = False, str(exc)
        try:
            info_len, info_error = sb.run(Side.CLIENT, _loopback_tcp_info), None
        except (TunerError, OSError) as exc:
            info_len, info_error = None, str(exc)
    finally:
        sb.close()
    total = time.monotonic() - t0
    checks.append(
        Check(
            "namespaces",
            Status.OK,
            f"created a sandbox in {created:.2f} s, removed it ({total:.2f} s in all)",
            "candidates are tried in private namespaces; the host is never touched",
        )
    )
    config = kernel_config("CONFIG_NET_SCH_NETEM")
    if netem:
        checks.append(
            Check(
                "netem",
                Status.OK,
                "the kernel accepts a netem qdisc",
                "delay, loss and rate are emulated in the kernel (sandbox backend netem)",
            )
        )
    else:
        found = "no netem qdisc in this kernel" + (f" (CONFIG_NET_SCH_NETEM={config})" if config else "")
        if netem_error:
            found += f": {netem_error}"
        checks.append(
            Check(
                "netem",
                Status.NOTE if tun_ok else Status.MISSING,
                found,
                "paths are emulated by tuner's userspace delay line over TUN devices instead "
                "(see the measured ceiling below; each run reports its own health)",
                _NETEM_FIX,
            )
        )
    if tun_ok:
        checks.append(
            Check(
                "tun",
                Status.OK,
                "/dev/net/tun works inside a namespace",
                "the userspace delay line can run (backend tun)",
            )
        )
    else:
        checks.append(
            Check(
                "tun",
                Status.MISSING,
                f"cannot create a TUN device: {tun_error}",
                "no userspace delay line",
                "modprobe tun; or create it: mknod /dev/net/tun c 10 200",
            )
        )
    if netem or tun_ok:
        checks.append(
            Check(
                "path emulation",
                Status.OK,
                "netem" if netem else "userspace delay line (tun)",
                "RTT, rate and loss of a Path can be emulated",
            )
        )
    else:
        checks.append(
            Check(
                "path emulation",
                Status.FAIL,
                "neither netem nor TUN",
                "only paths without delay, rate or loss can be measured",
                _NETEM_FIX,
            )
        )
    if netem or tun_ok:
        checks.append(_check_ceiling())
    checks.append(_check_tcp_info(info_len, info_error))
    stale, orphans = stale_sandboxes()
    if stale or orphans:
        names = [r.name for r in stale] + orphans
        checks.append(
            Check(
                "stale sandboxes",
                Status.NOTE,
                f"{len(names)} left by dead tuner processes: "
                f"{', '.join(names[:4])}{' ...' if len(names) > 4 else ''}",
                "they are removed by the next sandbox anyway",
                "tuner sandbox gc",
            )
        )
    else:
        checks.append(
            Check("stale sandboxes", Status.OK, "none", "nothing left behind by dead tuner processes")
        )
    return checks


def _check_ceiling() -> Check:
    """Measure what one TCP stream gets across the emulated path on this machine, now."""
    from tuner.sandbox.ceiling import PROBE_RATE_BPS, measure_ceiling

    try:
        c = measure_ceiling(PROBE_RATE_BPS, seconds=2.0)
    except (TunerError, OSError) as exc:
        return Check(
            "path ceiling",
            Status.NOTE,
            f"could not measure: {exc}",
            "searches still check each run's path health",
        )
    return Check(
        "path ceiling",
        Status.OK if c.valid else Status.NOTE,
        f"measured {c.delivered_bps / 1e6:,.0f} Mbit/s: {c.describe()}",
        "paths faster than this cannot be emulated on this machine under its present load: a search "
        "over such a path says so and claims nothing",
        "run searches for faster paths on a machine with more idle cores",
    )


def _tun_probe(open_tun: Callable[[str], int]) -> None:
    os.close(open_tun("tnrdoctor0"))


def _loopback_tcp_info() -> int:
    from tuner.adapters.rtnl import set_link

    set_link("lo")
    return tcp_info_length()


def run_checks() -> list[Check]:
    checks = [_check_root()]
    if checks[0].status is Status.OK:
        checks.extend(_sandbox_checks())
    else:
        for name in ("namespaces", "path emulation"):
            checks.append(Check(name, Status.FAIL, "not checked", "needs root", "run `sudo tuner doctor`"))
        try:  # over this namespace's loopback: needs no privilege
            checks.append(_check_tcp_info(tcp_info_length(), None))
        except OSError as exc:
            checks.append(_check_tcp_info(None, str(exc)))
    checks.append(_check_congestion())
    checks.append(_check_firewall_tools())
    return checks


def essential_failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status is Status.FAIL]
