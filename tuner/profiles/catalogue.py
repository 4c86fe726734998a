"""Profiles found by name, as tuned finds its profiles: the administrator's first, then the shipped ones.

    resolve("low-latency-rr")        -> /etc/tuner/profiles/low-latency-rr.toml, else the shipped file
    resolve("./mine.toml")           -> that path (anything with a "/" or ending in .toml is a path)
    entries()                        -> every profile by name, with where it comes from

The administrator's directory is ``/etc/tuner/profiles`` (``$TUNER_PROFILES_DIR`` replaces it, for tests
and unprivileged trials); the shipped profiles are package data (``tuner/data/profiles``, in the wheel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tuner.errors import ProfileError
from tuner.profiles.model import NAME_RE

__all__ = ["SYSTEM_DIR", "CatalogueEntry", "UnknownProfile", "entries", "is_path", "resolve", "search_dirs"]

SYSTEM_DIR = Path("/etc/tuner/profiles")


class UnknownProfile(ProfileError):
    """A profile name found in none of the search directories (or a reference that is no name)."""


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    path: Path
    source: str  # "system" (/etc/tuner/profiles) or "shipped"
    shadowed: bool = False  # a system profile of the same name hides this one


def search_dirs() -> list[tuple[str, Path]]:
    """Where names are looked up, first match wins."""
    system = Path(os.environ.get("TUNER_PROFILES_DIR") or SYSTEM_DIR)
    shipped = Path(str(resources.files("tuner").joinpath("data", "profiles")))
    return [("system", system), ("shipped", shipped)]


def is_path(ref: str) -> bool:
    return "/" in ref or ref.endswith(".toml")


def resolve(ref: str) -> Path:
    """The file of profile ``ref``: a path as given, or the first ``NAME.toml`` in :func:`search_dirs`."""
    if is_path(ref):
        return Path(ref)
    if not NAME_RE.fullmatch(ref):
        raise UnknownProfile(
            ref,
            "is neither a profile name nor a path",
            hint="give a profile name (`tuner profiles list`) or a path to a .toml file",
        )
    for _, directory in search_dirs():
        candidate = directory / f"{ref}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted({e.name for e in entries()})) or "none"
    raise UnknownProfile(
        ref, "no profile of that name", hint=f"known profiles: {known}; or give a path to a .toml file"
    )


def entries() -> list[CatalogueEntry]:
    """Every profile by name in every search directory, sorted by name (system before shipped)."""
    seen: set[str] = set()
    out: list[CatalogueEntry] = []
    for source, directory in search_dirs():
        try:
            files = sorted(p for p in directory.iterdir() if p.suffix == ".toml" and p.is_file())
        except OSError:
            continue
        for file in files:
            name = file.stem
            if not NAME_RE.fullmatch(name):
                continue
            out.append(CatalogueEntry(name, file, source, shadowed=name in seen))
            seen.add(name)
    return sorted(out, key=lambda e: (e.name, e.shadowed))
