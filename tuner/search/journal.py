"""The study journal: an append-only JSON-lines file, one record per line, fsynced after each append.

The first record is the header: what the study searches (workload, path, space, objective, sampler,
seed). Every trial follows as one record. An interrupted search resumes from the journal when the
header matches the new search; a resume with a different configuration is refused. A last line cut
short by a crash is dropped (and cut off the file) on resume; damage anywhere else is an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner.errors import InputError, StateError
from tuner.inputs import parse_json
from tuner.logs import get_logger
from tuner.trusted import open_append, open_nofollow, read_limited

__all__ = ["IDENTITY_KEYS", "JOURNAL_VERSION", "SearchJournal"]

log = get_logger(__name__)

JOURNAL_VERSION = 1
MAX_JOURNAL_BYTES = 64 << 20  # a search of 1000 trials writes about 5 MiB
# The header fields a resumed search must match exactly.
IDENTITY_KEYS = ("workload", "path", "space", "objective", "sampler", "seed")


class SearchJournal:
    """One study's journal file. Open it with :meth:`create` or :meth:`resume`."""

    def __init__(self, path: Path, header: Mapping[str, Any], records: list[dict[str, Any]]) -> None:
        self.path = path
        self.header = dict(header)
        self.records = records  # the trial records read on resume (empty for a new journal)

    @classmethod
    def create(cls, path: Path, header: Mapping[str, Any]) -> SearchJournal:
        path = Path(path)
        if path.exists() and path.stat().st_size > 0:
            raise InputError(
                f"journal {path} already exists",
                hint="add --resume to continue that search, or choose another --journal",
            )
        if not path.parent.is_dir():
            raise InputError(
                f"journal {path}: the directory {path.parent} does not exist",
                hint="create it first, or choose another --journal",
            )
        journal = cls(path, header, [])
        journal._append({"type": "header", "version": JOURNAL_VERSION, **header})
        log.info("journal.created", file=str(path))
        return journal

    @classmethod
    def resume(cls, path: Path, header: Mapping[str, Any]) -> SearchJournal:
        """Open an existing journal whose header matches ``header``; a missing file starts a new one."""
        path = Path(path)
        if not path.exists() or path.stat().st_size == 0:
            log.info("journal.resume_empty", file=str(path))
            return cls.create(path, header)
        lines, good_bytes = cls._read_lines(path)
        if not lines or lines[0].get("type") != "header":
            raise StateError(
                path,
                "is not a tuner search journal (no header line)",
                hint="start a new search without --resume, or choose another --journal",
            )
        found = lines[0]
        if found.get("version") != JOURNAL_VERSION:
            raise StateError(
                path,
                f"journal version {found.get('version')} is not supported",
                hint="start a new search with another --journal",
            )
        different = [k for k in IDENTITY_KEYS if _norm(found.get(k)) != _norm(header.get(k))]
        if different:
            raise InputError(
                f"journal {path} belongs to a different search: {', '.join(different)} differ",
                hint="resume with the same workload, path, knobs, objective, sampler and seed as the "
                "interrupted search, or start a new one with another --journal",
            )
        if good_bytes < path.stat().st_size:
            fd = open_nofollow(path, os.O_WRONLY)  # drop a last line cut short by a crash
            try:
                os.ftruncate(fd, good_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            log.warning("journal.truncated_tail", file=str(path), kept_bytes=good_bytes)
        records = [r for r in lines[1:] if r.get("type") == "trial"]
        log.info("journal.resumed", file=str(path), trials=len(records))
        return cls(path, {k: v for k, v in found.items() if k not in ("type", "version")}, records)

    @staticmethod
    def _read_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
        try:
            data = read_limited(path, MAX_JOURNAL_BYTES, what="journal")
        except ValueError as exc:
            raise StateError(path, str(exc), hint="start a new search with another --journal") from None
        out: list[dict[str, Any]] = []
        offset = 0
        raw_lines = data.split(b"\n")
        for i, raw in enumerate(raw_lines):
            last = i == len(raw_lines) - 1
            if last and not raw:
                break
            try:
                if last:  # no newline after it: written only in part
                    raise ValueError("incomplete last line")
                record = parse_json(raw, allow_nan=True)
                if not isinstance(record, dict):
                    raise ValueError("not an object")  # noqa: TRY004 (caught below as a bad line)
            except ValueError as exc:
                if last or (i == len(raw_lines) - 2 and not raw_lines[-1]):
                    return out, offset
                raise StateError(
                    path, f"line {i + 1} is damaged ({exc})", hint="start a new search with another --journal"
                ) from None
            out.append(record)
            offset += len(raw) + 1
        return out, offset

    def append(self, record: Mapping[str, Any]) -> None:
        self._append({"type": "trial", **record})

    def _append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        fd = open_append(self.path, 0o644)
        try:
            data = memoryview(line.encode())
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)


def _norm(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
