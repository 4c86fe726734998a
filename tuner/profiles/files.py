"""Reading profile files safely and writing them atomically, through :mod:`tuner.trusted`.

A profile is read through one file descriptor (no symlink): its type, size and (when asked) ownership
and mode are checked on that descriptor before a byte is parsed, so the file checked is the file read.
"""

from __future__ import annotations

import os
from pathlib import Path

from tuner.errors import ProfileError, UnsafeFileError
from tuner.trusted import atomic_write, check_owner_mode, read_limited

__all__ = ["MAX_PROFILE_BYTES", "atomic_write", "check_trusted", "read_profile_bytes"]

MAX_PROFILE_BYTES = 1 << 20  # 1 MiB: far more than any profile with evidence needs


def check_trusted(file: Path | str, st: os.stat_result) -> None:
    """Refuse a profile root should not trust: owned by another user, or writable by group or others."""
    check_owner_mode(file, st, "profile")


def read_profile_bytes(file: Path | str, *, trusted_only: bool = False) -> bytes:
    """The bytes of a profile file, after checking it is a regular file of at most 1 MiB (and, with
    ``trusted_only``, that only root can change it and its directories). A symlink is refused."""
    try:
        return read_limited(file, MAX_PROFILE_BYTES, trusted=trusted_only, what="profile")
    except UnsafeFileError:
        raise
    except ValueError as exc:
        hint = (
            "is this the right file? a profile with evidence is a few KiB"
            if "bytes" in str(exc)
            else "give the path of a profile file (.toml)"
        )
        raise ProfileError(file, str(exc), hint=hint) from None
    except OSError as exc:
        raise ProfileError(
            file, f"cannot open: {exc.strerror}", hint="give the path of a profile file (.toml)"
        ) from None
