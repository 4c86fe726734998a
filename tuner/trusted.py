"""The one way tuner touches a file on a user's behalf: no symlinks followed, no file another user planted.

tuner runs as root. A path it is given (a state directory, a journal, a config, a profile to stage, an
output file) may lie in a directory an unprivileged user can write, who could plant a symlink to
``/etc/shadow`` or a file of their own. The rules, StrictModes-style:

* A directory tuner keeps state in (:func:`ensure_dir`) is created ``0700`` when missing; an existing
  one must not be a symlink, must be owned by us (the effective uid) and not writable by group or
  others. Every parent up to ``/`` must be owned by root or us and not writable by group or others,
  unless it is sticky (like ``/tmp``: others cannot rename or remove what we create there).
* A file is opened with ``O_NOFOLLOW`` (a symlink as the last component is refused), checked on the
  descriptor with ``fstat`` (regular file, owner, mode, size) and read or written through that same
  descriptor, so the file checked is the file used.
* :func:`read_trusted` also refuses a file not owned by root/us or writable by group or others: what
  decides what root does (a config, a profile to apply) must be editable only by root.
* A new file is written to a temporary name created with ``O_EXCL`` in the same checked directory,
  fsynced, and renamed over the target (:func:`atomic_write`); the directory is fsynced too.

Errors are :class:`~tuner.errors.UnsafeFileError` (exit 2) naming the file and what to run to fix it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from tuner.errors import UnsafeFileError

__all__ = [
    "atomic_write",
    "check_dir",
    "check_owner_mode",
    "ensure_dir",
    "open_append",
    "open_nofollow",
    "read_limited",
    "read_trusted",
]

_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _owners() -> set[int]:
    return {0, os.geteuid()}


def check_owner_mode(file: Path | str, st: os.stat_result, what: str = "file") -> None:
    """Refuse ``st`` when owned by someone other than root/us, or writable by group or others."""
    if st.st_uid not in _owners():
        raise UnsafeFileError(
            file,
            f"refusing to use the {what}: it is owned by uid {st.st_uid}, not root",
            hint=f"anyone who owns it could change what root does; run `chown root: {file}`",
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeFileError(
            file,
            f"refusing to use the {what}: it is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"anyone who can edit it could change what root does; run `chmod go-w {file}`",
        )


def _check_parents(path: Path) -> None:
    """Every existing ancestor of ``path`` owned by root/us and not group/world-writable (sticky is fine)."""
    for parent in path.absolute().parents:
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            continue
        if st.st_uid not in _owners():
            raise UnsafeFileError(
                path,
                f"refusing to use it: its directory {parent} is owned by uid {st.st_uid}",
                hint="keep tuner's files in directories only root can change",
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            raise UnsafeFileError(
                path,
                f"refusing to use it: its directory {parent} is writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}) and not sticky",
                hint=f"run `chmod go-w {parent}`, or choose a directory only root can change",
            )


def check_dir(path: Path | str) -> Path:
    """Refuse an existing directory root should not keep files in (see the module documentation)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UnsafeFileError(path, "no such directory") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFileError(
            path,
            "refusing to use the directory: it is a symbolic link",
            hint=f"give the real directory ({os.path.realpath(path)}) if you trust it",
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFileError(path, "is not a directory")
    check_owner_mode(path, st, "directory")
    _check_parents(path)
    return path


def ensure_dir(path: Path | str, mode: int = 0o700) -> Path:
    """``path`` as a directory root can trust: created with ``mode`` (parents 0755) when missing, else
    checked by :func:`check_dir`."""
    path = Path(path)
    _check_parents(path)
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    for p in reversed(missing):
        # created meanwhile: checked below like any existing one
        with contextlib.suppress(FileExistsError):
            os.mkdir(p, mode if p == path else 0o755)
    return check_dir(path)


def open_nofollow(file: Path | str, flags: int = _OPEN_READ, mode: int = 0o600) -> int:
    """``os.open`` with ``O_NOFOLLOW | O_CLOEXEC``; a symlink is an :class:`UnsafeFileError`."""
    try:
        return os.open(file, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symbolic link
            raise UnsafeFileError(
                file,
                "refusing to use it: it is a symbolic link",
                hint=f"give the real file ({os.path.realpath(file)}) if you trust it",
            ) from None
        raise


def read_limited(file: Path | str, max_bytes: int, *, trusted: bool = False, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read through one descriptor, no symlink.

    ``trusted``: refuse it unless root/us owns it and only the owner can write it (and its directories).
    Raises ``OSError`` when it cannot be opened or read, :class:`UnsafeFileError` for a refusal and
    ``ValueError`` when it is not a regular file or too large.
    """
    if trusted:
        _check_parents(Path(file))
    fd = open_nofollow(file)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("is not a regular file")
        if trusted:
            check_owner_mode(file, st, what)
        if st.st_size > max_bytes:
            raise ValueError(f"is {st.st_size} bytes; a {what} is at most {max_bytes} bytes")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 16):
            total += len(chunk)
            if total > max_bytes:  # it grew while we read it
                raise ValueError(f"is larger than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_trusted(file: Path | str, max_bytes: int, what: str = "file") -> bytes:
    """:func:`read_limited` with ``trusted=True``."""
    return read_limited(file, max_bytes, trusted=True, what=what)


def atomic_write(path: Path | str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file created with ``O_EXCL`` in the same
    directory, fsynced, renamed over the target (a symlink there is replaced, never followed); the
    directory is fsynced too, so a crash leaves the old file or the new one, never half."""
    path = Path(path)
    directory = path.parent
    for attempt in range(100):
        tmp = directory / f".{path.name}.{os.getpid()}.{attempt}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    else:
        raise UnsafeFileError(
            tmp,
            "cannot create a temporary file: every name is taken",
            hint=f"remove the .{path.name}.*.tmp files in {directory}",
        )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_append(file: Path | str, mode: int = 0o600) -> int:
    """A descriptor to append to ``file`` (created when missing), refusing a symlink, a file that is
    not regular, or one another user owns or can write; its directories are checked too."""
    _check_parents(Path(file))
    fd = open_nofollow(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(file, "is not a regular file")
        check_owner_mode(file, st)
    except BaseException:
        os.close(fd)
        raise
    return fd
