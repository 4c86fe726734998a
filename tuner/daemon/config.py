"""The daemon's configuration: /etc/tuner/tuner.toml over the documented defaults in tuner/data/tuner.toml.

The shipped file is the single source of the defaults: a user's file is merged over it key by key, and
the result is validated once. Every problem is a :class:`~tuner.errors.ConfigError` naming the file and
the dotted key.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

from tuner.errors import ConfigError, InputError, UnsafeFileError
from tuner.inputs import TooDeep, bounded, parse_toml
from tuner.knobs import CATALOGUE
from tuner.logs import get_logger
from tuner.search.stats import MIN_REPEATS
from tuner.trusted import read_trusted
from tuner.units import parse_duration

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ApplyConfig",
    "DaemonConfig",
    "GuardConfig",
    "Mode",
    "ObserveConfig",
    "OnStop",
    "SearchPolicy",
    "ServiceSelection",
    "default_config_text",
    "load_config",
    "parse_config",
    "reload_config",
]

log = get_logger(__name__)
DEFAULT_CONFIG_PATH = Path("/etc/tuner/tuner.toml")
_MAX_CONFIG_BYTES = 1 << 20
_COUNTER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*\.[A-Za-z][A-Za-z0-9_]*")


class Mode(Enum):
    RECOMMEND = "recommend"
    APPLY = "apply"


class OnStop(Enum):
    KEEP = "keep"
    ROLLBACK = "rollback"


class ServiceSelection(Enum):
    WITH_SYMPTOMS = "with-symptoms"
    ALL = "all"


@dataclass(frozen=True)
class ObserveConfig:
    interval: float
    services: ServiceSelection
    settle: int
    rtt_change: float
    rtt_floor: float
    rate_change: float
    loss_change: float


@dataclass(frozen=True)
class SearchPolicy:
    enabled: bool
    budget: int
    time: float
    repeats: int
    duration: float
    min_interval: float
    nice: int
    io_class: str
    stop_grace: float


@dataclass(frozen=True)
class ApplyConfig:
    allow: frozenset[str]
    on_stop: OnStop


@dataclass(frozen=True)
class GuardConfig:
    window: float
    new_symptoms: bool
    counters: tuple[str, ...]
    max_counter_increase: float
    counter_floor: float
    max_retrans_increase: float
    max_rtt_increase: float
    rtt_floor: float


@dataclass(frozen=True)
class MetricsConfig:
    listen: tuple[str, int] | None  # (host, port) of the /metrics endpoint; None: off


@dataclass(frozen=True)
class DaemonConfig:
    enabled: bool
    mode: Mode
    state_dir: Path
    observe: ObserveConfig
    search: SearchPolicy
    apply: ApplyConfig
    guard: GuardConfig
    source: str = "(defaults)"  # the file it came from, for messages and `tuner status`
    metrics: MetricsConfig = field(default_factory=lambda: MetricsConfig(None))
    log_level: str = "info"

    def with_state_dir(self, state_dir: Path) -> DaemonConfig:
        return replace(self, state_dir=state_dir)


def default_config_text() -> str:
    """The documented default configuration shipped with the package."""
    return resources.files("tuner").joinpath("data", "tuner.toml").read_text()


def _parse_toml(text: str, file: str) -> dict[str, Any]:
    try:
        return parse_toml(text)
    except TooDeep as exc:
        raise ConfigError(
            file, str(exc), hint="a configuration has tables one level deep, e.g. [search]"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            file,
            f"not valid TOML: {exc}",
            hint="fix the syntax; the default file documents every key (tuner/data/tuner.toml)",
        ) from None


def _merge(
    base: Mapping[str, Any], override: Mapping[str, Any], file: str, prefix: str = ""
) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            close = difflib.get_close_matches(key, list(base), n=1)
            hint = (
                f"did you mean {prefix}{close[0]}?"
                if close
                else f"known keys here: {', '.join(prefix + k for k in base)}"
            )
            raise ConfigError(file, "unknown key", key=dotted, hint=hint)
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(file, "must be a table", key=dotted, hint=f"write it as [{dotted}]")
            out[key] = _merge(base[key], value, file, prefix=f"{dotted}.")
        else:
            if isinstance(value, dict):
                raise ConfigError(file, "must be a value, not a table", key=dotted)
            out[key] = value
    return out


_NUMBER_CAP = 1e15  # no config number means more; NaN and infinities are refused too
_DURATION_CAP = 30 * 86400.0  # 30 days: no interval of the daemon is longer


class _Reader:
    """Typed access to the merged table; every failure names the file and the dotted key."""

    def __init__(self, data: Mapping[str, Any], file: str) -> None:
        self.data = data
        self.file = file

    def _get(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            node = node[part]
        return node

    def fail(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(self.file, message, key=key, hint=hint)

    def boolean(self, key: str) -> bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, got {v!r}")
        return v

    def integer(self, key: str, lo: int, hi: int) -> int:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(key, f"expected an integer {lo}..{hi}, got {v!r}")
        return v

    def number(self, key: str, lo: float, hi: float = _NUMBER_CAP) -> float:
        try:
            return bounded(self._get(key), lo, hi, "expected a finite number")
        except InputError as exc:
            raise self.fail(key, exc.message, hint=exc.hint) from None

    def duration(self, key: str, lo: float, hi: float = _DURATION_CAP) -> float:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise self.fail(key, f'expected a duration such as "10s", got {v!r}')
        if isinstance(v, str):
            try:
                seconds = parse_duration(v)
            except InputError as exc:
                raise self.fail(key, exc.message, hint=exc.hint) from None
        else:
            seconds = v
        try:
            return bounded(seconds, lo, hi, "duration", unit="s")
        except InputError as exc:
            raise self.fail(key, exc.message, hint='use a duration such as "10s" in that range') from None

    def choice(self, key: str, enum: type[Enum]) -> Any:
        v = self._get(key)
        try:
            return enum(v)
        except ValueError:
            raise self.fail(
                key, f"{v!r} is not allowed", hint=f"one of: {', '.join(repr(e.value) for e in enum)}"
            ) from None

    def string_list(self, key: str) -> list[str]:
        v = self._get(key)
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.fail(key, f"expected a list of strings, got {v!r}")
        return v


def _allowed_knobs(r: _Reader) -> frozenset[str]:
    names = r.string_list("apply.allow")
    for name in names:
        knob = CATALOGUE.get(name)
        if knob is None:
            close = difflib.get_close_matches(name, [k for k, v in CATALOGUE.items() if v.is_sysctl], n=2)
            raise r.fail(
                "apply.allow",
                f"{name!r} is not a knob tuner knows",
                hint=f"did you mean {' or '.join(close)}?" if close else "list them with `tuner knobs`",
            )
        if not knob.is_sysctl:
            raise r.fail(
                "apply.allow",
                f"{name!r} is a socket setting; only the application can set it",
                hint="the daemon applies sysctls only; socket settings are in each profile's [socket]",
            )
    return frozenset(names)


def _counters(r: _Reader) -> tuple[str, ...]:
    names = r.string_list("guard.counters")
    for name in names:
        if not _COUNTER_NAME.fullmatch(name):
            raise r.fail(
                "guard.counters",
                f"{name!r} is not a counter name",
                hint="use Group.Name as in /proc/net/netstat and /proc/net/snmp, e.g. TcpExt.ListenOverflows",
            )
    return tuple(names)


def parse_config(text: str | None = None, *, file: str = "(defaults)") -> DaemonConfig:
    """Validate a configuration text merged over the shipped defaults (``None``: the defaults alone)."""
    defaults = _parse_toml(default_config_text(), "tuner/data/tuner.toml")
    data = defaults if text is None else _merge(defaults, _parse_toml(text, file), file)
    r = _Reader(data, file)
    state_dir = data["state_dir"]
    if not isinstance(state_dir, str) or not state_dir.startswith("/"):
        raise r.fail("state_dir", f"expected an absolute path, got {state_dir!r}")
    interval = r.duration("observe.interval", 0.1, 24 * 3600)
    io_class = r._get("search.io_class")
    if io_class not in ("idle", "best-effort"):
        raise r.fail("search.io_class", f"{io_class!r} is not allowed", hint="one of: 'idle', 'best-effort'")
    return DaemonConfig(
        enabled=r.boolean("enabled"),
        mode=r.choice("mode", Mode),
        state_dir=Path(state_dir),
        observe=ObserveConfig(
            interval=interval,
            services=r.choice("observe.services", ServiceSelection),
            settle=r.integer("observe.settle", 1, 1000),
            rtt_change=r.number("observe.rtt_change", 0.0),
            rtt_floor=r.duration("observe.rtt_floor", 0.0),
            rate_change=r.number("observe.rate_change", 0.0),
            loss_change=r.number("observe.loss_change", 0.0, 1.0),
        ),
        search=SearchPolicy(
            enabled=r.boolean("search.enabled"),
            budget=r.integer("search.budget", 1, 10000),
            time=r.duration("search.time", 1.0),
            repeats=r.integer("search.repeats", MIN_REPEATS, 100),  # fewer cannot carry a claim
            duration=r.duration("search.duration", 0.05, 600),
            min_interval=r.duration("search.min_interval", 0.0),
            nice=r.integer("search.nice", 0, 19),
            io_class=io_class,
            stop_grace=r.duration("search.stop_grace", 0.5, 60),
        ),
        apply=ApplyConfig(allow=_allowed_knobs(r), on_stop=r.choice("apply.on_stop", OnStop)),
        guard=GuardConfig(
            window=r.duration("guard.window", 0.1),
            new_symptoms=r.boolean("guard.new_symptoms"),
            counters=_counters(r),
            max_counter_increase=r.number("guard.max_counter_increase", 0.0),
            counter_floor=r.number("guard.counter_floor", 0.0),
            max_retrans_increase=r.number("guard.max_retrans_increase", 0.0, 1.0),
            max_rtt_increase=r.number("guard.max_rtt_increase", 0.0),
            rtt_floor=r.duration("guard.rtt_floor", 0.0),
        ),
        source=file,
        metrics=MetricsConfig(_listen_address(r)),
        log_level=_log_level(r),
    )


def _log_level(r: _Reader) -> str:
    level = r._get("log_level")
    if level not in ("debug", "info", "warning", "error"):
        raise r.fail("log_level", f"{level!r} is not a log level", hint="one of: debug, info, warning, error")
    return str(level)


def _listen_address(r: _Reader) -> tuple[str, int] | None:
    """``metrics.listen``: "" (off) or HOST:PORT with an IP literal or "localhost" and a port 1..65535."""
    text = r._get("metrics.listen")
    hint = 'e.g. "127.0.0.1:9464" or "[::1]:9464"; "" turns metrics off'
    if not isinstance(text, str):
        raise r.fail("metrics.listen", f"expected a string, got {text!r}", hint=hint)
    if not text:
        return None
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        if host != "localhost":
            ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise r.fail("metrics.listen", f"{text!r} is not HOST:PORT", hint=hint) from None
    if not sep or not 1 <= port <= 65535:
        raise r.fail("metrics.listen", f"{text!r}: the port must be 1..65535", hint=hint)
    return host, port


def load_config(path: Path | None = None, *, state_dir: Path | None = None) -> DaemonConfig:
    """Load ``path`` (default /etc/tuner/tuner.toml) over the defaults; ``state_dir`` (--state-dir)
    replaces the configured one.

    A missing default file means the defaults; a missing file that was named explicitly is an error.
    """
    cfg = _load(path)
    return cfg if state_dir is None else cfg.with_state_dir(state_dir)


def reload_config(path: Path | None, current: DaemonConfig, *, state_dir: Path | None = None) -> DaemonConfig:
    """``path`` loaded again for a running daemon (SIGHUP); ConfigError when it is invalid. The state
    directory stays the one the daemon runs with: a new state_dir takes effect at the next start."""
    new = load_config(path, state_dir=state_dir)
    if new.state_dir != current.state_dir:
        log.warning(
            "config.state_dir_unchanged",
            configured=str(new.state_dir),
            used=str(current.state_dir),
            hint="a new state_dir takes effect at the next start",
        )
        new = new.with_state_dir(current.state_dir)
    return new


def _load(path: Path | None) -> DaemonConfig:
    explicit = path is not None
    path = path if path is not None else DEFAULT_CONFIG_PATH
    try:
        # what the daemon does as root is decided here: only root may be able to change the file
        raw = read_trusted(path, _MAX_CONFIG_BYTES, what="configuration")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                path, "no such file", hint="create it, or leave out --config to run on the defaults"
            ) from None
        return parse_config(None)
    except UnsafeFileError:
        raise
    except ValueError as exc:
        raise ConfigError(path, str(exc), hint="give the path of a TOML configuration file") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, "not UTF-8 text", hint="a configuration is a TOML text file") from None
    return parse_config(text, file=str(path))
