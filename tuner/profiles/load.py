"""Loading and validating a profile file.

Validation is strict and names the file, the key (as a TOML key path) and the line: the schema version
first, then every section, every knob against the catalogue and its domain, then the coupled
constraints and what the kernel offers. Only exact catalogue names reach a Profile, so no path under
``/proc/sys`` other than a catalogue sysctl can ever be derived from a profile.

Knob names in ``[sysctl]`` are dotted; the canonical form quotes them (``"net.core.somaxconn" = 4096``)
so each is one TOML key. Written unquoted (``net.core.somaxconn = 4096``), TOML reads nested tables;
these are accepted and flattened, but strictly: every part must be a plain lower-case name and the
joined name must be exactly a catalogue sysctl. Anything else is refused with the key and its line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Any, NoReturn

from tuner.errors import InputError, KnobError, ProfileError, TunerError
from tuner.inputs import TooDeep, parse_toml
from tuner.knobs import CATALOGUE, Assignment, KernelFacts, get_knob
from tuner.profiles.catalogue import UnknownProfile, is_path
from tuner.profiles.catalogue import resolve as resolve_profile
from tuner.profiles.files import read_profile_bytes
from tuner.profiles.locate import KeyLines, key_path_text
from tuner.profiles.model import SCHEMA_VERSION, Profile, check_name
from tuner.workload import NetworkPath, Workload

__all__ = ["load_profile", "parse_profile"]

SECTIONS = ("profile", "workload", "path", "sysctl", "socket", "evidence")
# A hand-written profile needs only `version` and its settings: the name defaults to the file's name,
# `created` to the file's modification time; tuner_version and kernel stay empty ("hand-written").
_PROFILE_FIELDS = {
    "name": False,
    "description": False,
    "created": False,
    "tuner_version": False,
    "kernel": False,
}
MAX_INCLUDE_DEPTH = 8
_PATH_FLOATS = ("rtt", "rate_bps", "loss", "jitter")
_PATH_INTS = ("queue_packets",)
_NESTED_PART = re.compile(r"[a-z0-9_]+")
_SCHEMA_HINT = (
    'a profile has `version = 1`, optionally `include = "NAME"`, and the sections [profile], '
    "[workload], [path], [sysctl], [socket], [evidence]"
)


def load_profile(
    file: FilePath | str,
    *,
    facts: KernelFacts | None = None,
    trusted_only: bool = False,
    in_netns: bool = False,
) -> Profile:
    """Read and validate a profile file.

    ``facts``: what the target kernel offers (congestion-control algorithms); ``None`` skips that check.
    ``trusted_only``: refuse a file not owned by root or writable by group/others (host apply).
    ``in_netns``: the profile is for a network namespace, where the default congestion control can
    only be one the host allows (``net.ipv4.tcp_allowed_congestion_control``).
    Raises :class:`ProfileError` (or :class:`UnsafeFileError`) naming the file, key and line.
    """
    return _load(file, facts, trusted_only, in_netns, ())


class _IncludeProblem(Exception):
    """The reference in ``include`` cannot be followed (a cycle, too deep); reported at the include key."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def _load(
    file: FilePath | str,
    facts: KernelFacts | None,
    trusted_only: bool,
    in_netns: bool,
    chain: tuple[str, ...],
) -> Profile:
    data = read_profile_bytes(file, trusted_only=trusted_only)
    chain = (*chain, os.path.realpath(file))

    def parent(ref: str) -> Profile:
        """The profile ``include = ref`` names: a catalogue name, or a path relative to this file."""
        path = resolve_profile(ref)
        if is_path(ref) and not path.is_absolute():
            path = FilePath(file).parent / path
        if os.path.realpath(path) in chain:
            cycle = " -> ".join(FilePath(c).name for c in (*chain, os.path.realpath(path)))
            raise _IncludeProblem(
                f"include cycle: {cycle}", "a profile cannot include itself, directly or through others"
            )
        if len(chain) > MAX_INCLUDE_DEPTH:
            raise _IncludeProblem(
                f"includes nest more than {MAX_INCLUDE_DEPTH} deep", "flatten the chain of included profiles"
            )
        return _load(path, facts, trusted_only, in_netns, chain)

    try:
        mtime = datetime.fromtimestamp(os.stat(file).st_mtime, UTC).replace(microsecond=0)
    except (OSError, ValueError, OverflowError):
        mtime = None
    return parse_profile(data, file, facts=facts, in_netns=in_netns, include=parent, created=mtime)


def parse_profile(
    data: bytes,
    file: FilePath | str = "<profile>",
    *,
    facts: KernelFacts | None = None,
    in_netns: bool = False,
    include: Callable[[str], Profile] | None = None,
    created: datetime | None = None,
) -> Profile:
    """Validate the bytes of a profile; ``file`` names it in messages (and gives a hand-written profile
    its default name). ``include`` loads a parent profile by reference (``include = "NAME"``);
    ``created`` is the default creation time of a profile that does not state one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ProfileError(
            file, f"is not UTF-8 text (byte {exc.start})", line=line, hint="a profile is a TOML text file"
        ) from None
    if not text.strip():
        raise ProfileError(file, "is empty", key="version", hint="a profile starts with `version = 1`")
    try:
        doc = parse_toml(text)
    except TooDeep as exc:
        raise ProfileError(
            file,
            f"is {exc}",
            key=".".join(exc.path[:4]) or None,
            hint="a profile nests tables at most a few levels deep",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) if m else str(exc)
        raise ProfileError(
            file,
            f"is not valid TOML: {message}",
            line=int(m.group(1)) if m else None,
            hint="see https://toml.io for the syntax",
        ) from None
    return _Validator(file, KeyLines(text), facts, in_netns, include, created).profile(doc)


class _Validator:
    def __init__(
        self,
        file: FilePath | str,
        lines: KeyLines,
        facts: KernelFacts | None,
        in_netns: bool,
        include: Callable[[str], Profile] | None = None,
        created: datetime | None = None,
    ) -> None:
        self.include = include
        self.created = created
        self.file = file
        self.lines = lines
        self.facts = facts
        self.in_netns = in_netns
        self.where: dict[tuple[str, str], tuple[str, ...]] = {}  # (section, knob) -> key path in the file

    def fail(self, message: str, *path: str, hint: str | None = None) -> NoReturn:
        raise ProfileError(
            self.file,
            message,
            key=key_path_text(*path) if path else None,
            line=self.lines.line_of(*path) if path else None,
            hint=hint,
        )

    # --- the document -------------------------------------------------------------------------

    def profile(self, doc: dict[str, Any]) -> Profile:
        self.version(doc)
        for key in doc:
            if key not in ("version", "include") and key not in SECTIONS:
                self.fail(
                    f"unknown {'section' if isinstance(doc[key], dict) else 'key'} {key!r}",
                    key,
                    hint=_SCHEMA_HINT,
                )
        for key in SECTIONS:
            if key in doc and not isinstance(doc[key], dict):
                self.fail(f"must be a table ([{key}]), not {_type(doc[key])}", key, hint=_SCHEMA_HINT)
        parent = self.parent(doc["include"]) if "include" in doc else None
        meta = self.metadata(doc.get("profile", {}))
        workload = self.workload(doc["workload"]) if "workload" in doc else None
        path = self.path(doc["path"]) if "path" in doc else None
        sysctl = self.sysctl(doc.get("sysctl", {}))
        socket = self.socket(doc.get("socket", {}))
        if parent is not None:  # this file's settings win over the included ones
            sysctl, socket = parent.sysctl | sysctl, parent.socket | socket
            workload, path = workload or parent.workload, path or parent.path
            meta.setdefault("description", parent.description)
        self.coupled(sysctl, socket)
        try:
            return Profile(
                **meta,
                workload=workload,
                path=path,
                sysctl=sysctl,
                socket=socket,
                evidence=doc.get("evidence", {}),
            )
        except TunerError as exc:  # every check above should have caught it first
            self.fail(exc.message, hint=exc.hint)

    def version(self, doc: Mapping[str, Any]) -> None:
        hint = "a profile starts with `version = 1`"
        if "version" not in doc:
            self.fail("the schema version is missing", "version", hint=hint)
        v = doc["version"]
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(f"must be an integer, not {_type(v)} {v!r}", "version", hint=hint)
        if v > SCHEMA_VERSION:
            self.fail(
                f"schema version {v} is newer than this tuner reads (version {SCHEMA_VERSION})",
                "version",
                hint="upgrade tuner to use this profile",
            )
        if v != SCHEMA_VERSION:
            self.fail(f"{v} is not a schema version", "version", hint=hint)

    def parent(self, ref: object) -> Profile:
        if not isinstance(ref, str) or not ref:
            self.fail(
                f"must be a profile name or path, not {_type(ref)} {ref!r}",
                "include",
                hint='e.g. include = "low-latency-rr"',
            )
        if self.include is None:
            self.fail("cannot include from a profile that is not a file", "include")
        try:
            return self.include(ref)
        except UnknownProfile as exc:
            self.fail(f"include {ref!r}: {exc.message.removeprefix(ref + ': ')}", "include", hint=exc.hint)
        except _IncludeProblem as exc:
            self.fail(exc.message, "include", hint=exc.hint)

    def metadata(self, section: Mapping[str, Any]) -> dict[str, Any]:
        for key in section:
            if key not in _PROFILE_FIELDS:
                self.fail(
                    f"unknown key {key!r}",
                    "profile",
                    key,
                    hint=f"[profile] has: {', '.join(_PROFILE_FIELDS)}",
                )
        for key, required in _PROFILE_FIELDS.items():
            if required and key not in section:
                self.fail(
                    f"[profile] {key} is missing",
                    "profile",
                    key,
                    hint=f"[profile] needs {', '.join(k for k, r in _PROFILE_FIELDS.items() if r)}",
                )
        meta: dict[str, Any] = {"tuner_version": "", "kernel": ""}  # a hand-written profile: no measurement
        stem = FilePath(str(self.file)).stem
        try:
            meta["name"] = check_name(section.get("name", stem))
        except InputError as exc:
            self.fail(
                exc.message,
                "profile",
                "name",
                hint=exc.hint if "name" in section else f'{exc.hint}; or add [profile] name = "..."',
            )
        if "created" not in section:
            meta["created"] = self.created or datetime.now(UTC).replace(microsecond=0)
            created = meta["created"]
        else:
            created = section["created"]
        if not isinstance(created, datetime):
            self.fail(
                f"must be a date and time, not {_type(created)} {created!r}",
                "profile",
                "created",
                hint="write it as TOML offset date-time, e.g. 2025-01-31T12:00:00Z",
            )
        if created.tzinfo is None:
            self.fail("needs a UTC offset", "profile", "created", hint="e.g. 2025-01-31T12:00:00Z")
        meta["created"] = created
        for key, limit, multiline in (
            ("description", 4000, True),
            ("tuner_version", 64, False),
            ("kernel", 256, False),
        ):
            if key in section:
                meta[key] = self.text(section[key], limit, multiline, "profile", key)
        return meta

    def text(self, value: object, limit: int, multiline: bool, *path: str) -> str:
        if not isinstance(value, str):
            self.fail(f"must be a string, not {_type(value)} {value!r}", *path)
        if len(value) > limit:
            self.fail(f"is {len(value)} characters; at most {limit} are allowed", *path)
        allowed = "\n\t" if multiline else ""
        if any(not ch.isprintable() and ch not in allowed for ch in value):
            self.fail("contains control characters", *path, hint="use plain printable text")
        return value

    def workload(self, section: Mapping[str, Any]) -> Workload:
        known = Workload.__dataclass_fields__
        for key in section:
            if key not in known:
                self.fail(
                    f"unknown workload field {key!r}",
                    "workload",
                    key,
                    hint=f"workload fields: {', '.join(known)}",
                )
        if "kind" not in section:
            self.fail(
                "[workload] kind is missing",
                "workload",
                "kind",
                hint='e.g. kind = "rr" (rr, bulk, burst, udp, keepalive, memory)',
            )
        for key in sorted(section, key=lambda k: k != "kind"):  # kind first, then one field at a time
            try:
                Workload.from_dict({"kind": section["kind"], key: section[key]})
            except InputError as exc:
                self.fail(exc.message, "workload", key, hint=exc.hint)
        return Workload.from_dict(section)

    def path(self, section: Mapping[str, Any]) -> NetworkPath:
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key in _PATH_FLOATS:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    self.fail(
                        f"must be a number, not {_type(value)} {value!r}",
                        "path",
                        key,
                        hint="rtt and jitter in seconds, rate_bps in bits per second, loss a fraction",
                    )
                values[key] = value  # NetworkPath checks it is finite and in range
            elif key in _PATH_INTS:
                if isinstance(value, bool) or not isinstance(value, int):
                    self.fail(f"must be an integer, not {_type(value)} {value!r}", "path", key)
                values[key] = value
            else:
                self.fail(
                    f"unknown path field {key!r}",
                    "path",
                    key,
                    hint=f"path fields: {', '.join(_PATH_FLOATS + _PATH_INTS)}",
                )
        for key, value in values.items():  # one field at a time, so the message can name it
            try:
                NetworkPath(**{key: value})
            except InputError as exc:
                self.fail(
                    exc.message,
                    "path",
                    key,
                    hint=exc.hint
                    or "rtt and jitter in seconds (>= 0), rate_bps in bits per second (> 0), "
                    "loss a fraction between 0 and 1",
                )
        return NetworkPath(**values)

    # --- settings -------------------------------------------------------------------------------

    def sysctl(self, section: Mapping[str, Any]) -> Assignment:
        out = Assignment()
        for parts, value in self._flatten(section, ()):
            path = ("sysctl", *parts)
            name = ".".join(parts)
            knob = CATALOGUE.get(name)
            if knob is None:
                self._unknown(name, path)
            if not knob.is_sysctl:
                self.fail(
                    f"{name} is a socket setting, set by the application", *path, hint="put it in [socket]"
                )
            if name in out:
                self.fail(
                    f"{name} is set twice (once quoted, once as nested keys)",
                    *path,
                    hint='keep one: "' + name + '" = ...',
                )
            out |= self.value(knob.name, value, path)
            self.where[("sysctl", name)] = path
        return out

    def _flatten(self, table: Mapping[str, Any], prefix: tuple[str, ...]):
        for key, value in table.items():
            if isinstance(value, dict):
                if key in CATALOGUE and not prefix:
                    self.fail(
                        f"expected a value for {key}, not a table",
                        "sysctl",
                        key,
                        hint=f"allowed: {CATALOGUE[key].domain.describe()}",
                    )
                if not _NESTED_PART.fullmatch(key):
                    self.fail(
                        f"{key!r} is not part of a knob name",
                        "sysctl",
                        *prefix,
                        key,
                        hint='write knob names quoted: "net.core.somaxconn" = 4096',
                    )
                yield from self._flatten(value, (*prefix, key))
            else:
                if prefix and not _NESTED_PART.fullmatch(key):
                    self.fail(
                        f"{key!r} is not part of a knob name",
                        "sysctl",
                        *prefix,
                        key,
                        hint='write knob names quoted: "net.core.somaxconn" = 4096',
                    )
                yield (*prefix, key), value

    def socket(self, section: Mapping[str, Any]) -> Assignment:
        out = Assignment()
        for name, value in section.items():
            path = ("socket", name)
            knob = CATALOGUE.get(name)
            if knob is None:
                self._unknown(name, path)
            if not knob.set_by_application:
                self.fail(
                    f"{name} is a kernel setting (sysctl), not a socket setting",
                    *path,
                    hint="put it in [sysctl]",
                )
            if isinstance(value, dict):
                self.fail(
                    f"expected a value for {name}, not a table",
                    *path,
                    hint=f"allowed: {knob.domain.describe()}",
                )
            out |= self.value(name, value, path)
            self.where[("socket", name)] = path
        return out

    def _unknown(self, name: str, path: tuple[str, ...]) -> NoReturn:
        try:
            get_knob(name)
        except KnobError as exc:
            self.fail(
                f"{key_path_text(name)} is not a knob tuner knows; a profile may only set catalogue knobs",
                *path,
                hint=exc.hint,
            )
        raise AssertionError("unreachable")

    def value(self, name: str, value: object, path: tuple[str, ...]) -> Assignment:
        """``name = value`` as a one-knob Assignment (validated here, once), or a failure at ``path``."""
        try:
            return Assignment({name: value})
        except KnobError as exc:
            self.fail(
                _strip_knob(exc, name),
                *path,
                hint=exc.hint or f"allowed: {CATALOGUE[name].domain.describe()}",
            )

    def coupled(self, sysctl: Assignment, socket: Assignment) -> None:
        for problem in (sysctl | socket).violations(self.facts):
            section = "sysctl" if problem.knob in sysctl else "socket"
            where = self.where.get((section, problem.knob), ("include",))  # a knob of the included profile
            self.fail(_strip_knob(problem, problem.knob), *where, hint=problem.hint)
        algo = sysctl.get("net.ipv4.tcp_congestion_control")
        if (
            self.in_netns
            and self.facts is not None
            and self.facts.congestion_allowed
            and algo is not None
            and algo not in self.facts.congestion_allowed
        ):
            allowed = " ".join(sorted(self.facts.congestion_allowed))
            self.fail(
                f"congestion control {algo!r} is not allowed inside a network namespace (allowed: {allowed})",
                *self.where.get(("sysctl", "net.ipv4.tcp_congestion_control"), ("include",)),
                hint=f"on the host, add it to net.ipv4.tcp_allowed_congestion_control, or use one of {allowed}",
            )


def _strip_knob(exc: KnobError, name: str) -> str:
    """The message of a KnobError without its leading ``knob:`` (the key path already names it)."""
    prefix = f"{exc.knob}: "
    message = exc.message[len(prefix) :] if exc.message.startswith(prefix) else exc.message
    if exc.knob.startswith(name + "[") and exc.knob.endswith("]"):
        message = f"{exc.knob[len(name) + 1 : -1]}: {message}"
    return message


def _type(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
        datetime: "a date-time",
    }.get(type(value), type(value).__name__)
