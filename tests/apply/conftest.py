"""Fixtures of the apply tests: the sysctl tree over the fake /proc/sys, a state dir, immutable files."""

from __future__ import annotations

import array
import fcntl
import os
from pathlib import Path

import pytest

from tuner.knobs import CATALOGUE, SysctlTree

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x10


def snapshot(tree: SysctlTree) -> dict[str, object]:
    return {n: tree.read(k) for n, k in CATALOGUE.items() if k.is_sysctl}


def _set_immutable(path: Path, on: bool) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | FS_IMMUTABLE_FL if on else flags[0] & ~FS_IMMUTABLE_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
    finally:
        os.close(fd)


@pytest.fixture
def immutable():
    """make(path): set the immutable attribute (even root cannot write the file); cleared afterwards."""
    made: list[Path] = []

    def make(path: Path) -> None:
        try:
            _set_immutable(path, True)
        except OSError as exc:
            pytest.skip(f"this filesystem has no immutable attribute: {exc}")
        made.append(path)

    yield make
    for path in made:
        _set_immutable(path, False)


@pytest.fixture
def tree(fake_proc_sys) -> SysctlTree:
    return SysctlTree(fake_proc_sys)


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def snap(tree):
    """snap(): the value of every catalogue sysctl in the fake tree."""
    return lambda: snapshot(tree)
