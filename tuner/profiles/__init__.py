"""Profiles: the TOML deliverable (settings + workload + evidence); load, validate, save, render."""

from tuner.profiles.catalogue import CatalogueEntry, UnknownProfile, entries
from tuner.profiles.catalogue import resolve as resolve_profile
from tuner.profiles.files import MAX_PROFILE_BYTES, atomic_write, check_trusted, read_profile_bytes
from tuner.profiles.load import load_profile, parse_profile
from tuner.profiles.model import SCHEMA_VERSION, Profile, profile_name_for
from tuner.profiles.render import (
    render_nginx_listen,
    render_python_setsockopt,
    render_socket_snippets,
    render_sysctl_d,
)
from tuner.profiles.save import dump_profile, save_profile

__all__ = [
    "MAX_PROFILE_BYTES",
    "SCHEMA_VERSION",
    "CatalogueEntry",
    "Profile",
    "UnknownProfile",
    "atomic_write",
    "check_trusted",
    "dump_profile",
    "entries",
    "load_profile",
    "parse_profile",
    "profile_name_for",
    "read_profile_bytes",
    "render_nginx_listen",
    "render_python_setsockopt",
    "render_socket_snippets",
    "render_sysctl_d",
    "resolve_profile",
    "save_profile",
]
