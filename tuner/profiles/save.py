"""Writing a profile: one canonical TOML text, saved atomically.

The canonical form is what :func:`dump_profile` returns: ``version = 1`` first, then [profile],
[workload], [path], [sysctl] and [socket] with knobs in catalogue order and knob names quoted, then
[evidence]. Comments in a hand-edited file are not kept; the canonical header comments are always
written, so saving a loaded canonical file reproduces its bytes exactly.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Any

import tomli_w

from tuner.errors import ProfileError
from tuner.knobs import Assignment
from tuner.profiles.files import atomic_write
from tuner.profiles.model import SCHEMA_VERSION, Profile

__all__ = ["dump_profile", "save_profile"]

_HEADER = """\
# tuner profile. Apply with `tuner apply FILE`, check with `tuner verify FILE`, undo with `tuner rollback`;
# `tuner render FILE` shows it as a sysctl.d file and as socket settings for the application.
"""
_NO_EVIDENCE = """\
# No evidence yet: no measurement backs these settings. `tuner recommend` records its evidence here
# (baseline against recommended, the trials, the confidence).
"""


def _scalar(value: Any) -> str:
    return tomli_w.dumps({"v": value})[len("v = ") : -1]


def _settings(section: str, settings: Assignment) -> str:
    lines = [f"[{section}]"]
    for name in settings.in_catalogue_order():
        value = settings[name]
        text = (
            "[" + ", ".join(_scalar(v) for v in value) + "]" if isinstance(value, tuple) else _scalar(value)
        )
        key = tomli_w.dumps({name: 0})[: -len(" = 0\n")]
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def dump_profile(profile: Profile) -> str:
    """The canonical TOML text of ``profile``."""
    meta = {
        "name": profile.name,
        "description": profile.description,
        "created": profile.created,
        "tuner_version": profile.tuner_version,
        "kernel": profile.kernel,
    }
    parts = [_HEADER + tomli_w.dumps({"version": SCHEMA_VERSION}), tomli_w.dumps({"profile": meta})]
    if profile.workload is not None:
        parts.append(tomli_w.dumps({"workload": profile.workload.to_dict()}))
    if profile.path is not None:
        parts.append(tomli_w.dumps({"path": profile.path.to_dict()}))
    parts.append(_settings("sysctl", profile.sysctl))
    parts.append(_settings("socket", profile.socket))
    try:
        evidence = tomli_w.dumps({"evidence": profile.evidence})
    except (TypeError, ValueError) as exc:
        raise ProfileError(
            f"profile {profile.name}", f"evidence cannot be written as TOML: {exc}", key="evidence"
        ) from None
    parts.append((_NO_EVIDENCE if not profile.evidence else "") + evidence)
    return "\n".join(parts)


def save_profile(profile: Profile, file: FilePath | str) -> None:
    """Write ``profile`` to ``file`` atomically (mode 0644)."""
    atomic_write(FilePath(file), dump_profile(profile).encode("utf-8"))
