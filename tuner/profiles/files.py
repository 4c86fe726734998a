"""Reading profile files safely and writing files atomically.

A profile is read through one file descriptor: its type, size and (when asked) ownership and mode are
checked on that descriptor with ``fstat`` before a byte is parsed, so the file checked is the file read.
Writes go to a temporary file in the same directory, are fsynced, and replace the target with
``rename``; the directory is fsynced too, so a crash leaves the old file or the new one, never half.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from tuner.errors import ProfileError, UnsafeFileError

__all__ = ["MAX_PROFILE_BYTES", "read_profile_bytes", "check_trusted", "atomic_write"]

MAX_PROFILE_BYTES = 1 << 20  # 1 MiB: far more than any profile with evidence needs


def check_trusted(file: Path | str, st: os.stat_result) -> None:
    """Refuse a file that root should not trust: not owned by root, or writable by group or others."""
    if st.st_uid != 0:
        raise UnsafeFileError(
            file, f"refusing to apply to the host: the file is owned by uid {st.st_uid}, not root",
            hint=f"anyone who can edit it could change kernel settings; run `chown root: {file}`")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeFileError(
            file, f"refusing to apply to the host: the file is writable by group or others "
                  f"(mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"anyone who can edit it could change kernel settings; run `chmod go-w {file}`")


def read_profile_bytes(file: Path | str, *, trusted_only: bool = False) -> bytes:
    """The bytes of a profile file, after checking it is a regular file of at most 1 MiB."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ProfileError(file, f"cannot open: {exc.strerror}",
                           hint="give the path of a profile file (.toml)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProfileError(file, "is not a regular file", hint="give the path of a profile file (.toml)")
        if st.st_size > MAX_PROFILE_BYTES:
            raise ProfileError(file, f"is {st.st_size} bytes; a profile is at most {MAX_PROFILE_BYTES} bytes",
                               hint="is this the right file? a profile with evidence is a few KiB")
        if trusted_only:
            check_trusted(file, st)
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 16):
            total += len(chunk)
            if total > MAX_PROFILE_BYTES:  # it grew while we read it
                raise ProfileError(file, f"is larger than {MAX_PROFILE_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise ProfileError(file, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename + directory fsync)."""
    path = Path(path)
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
