"""The results file: one JSON line per finished row, appended whole and flushed as it is
finished; and its metadata beside it."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bulkgroups.model import Outcome

OWNER_ONLY = 0o600


def meta_path(results: Path) -> Path:
    return results.with_name(results.name.removesuffix(".jsonl") + ".meta.json")


def selection_path(results: Path) -> Path:
    """The rows a job with `[input] select` exported for this run (kept for resume)."""
    return results.with_name(results.name.removesuffix(".jsonl") + ".selected.jsonl")


class ResultsWriter:
    """Appends outcome lines with one unbuffered write per batch: each line reaches the kernel
    whole as soon as it is written, so a killed process leaves at most a torn last line."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, OWNER_ONLY)
        self._heal_torn_tail()

    def _heal_torn_tail(self) -> None:
        # A previous run killed mid-write may have left a line without its newline; end it so
        # the next line starts clean (the reader skips the torn line).
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                os.write(self._fd, b"\n")

    def write(self, outcomes: Iterable[Outcome]) -> None:
        data = b"".join(orjson.dumps(o, option=orjson.OPT_APPEND_NEWLINE) for o in outcomes)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True, slots=True)
class Fingerprint:
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Fingerprint:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return cls(size=path.stat().st_size, sha256=digest.hexdigest())


def read_meta(results: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(meta_path(results).read_bytes())
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def write_meta(results: Path, meta: dict[str, Any]) -> None:
    """Replace the metadata atomically: a crash leaves the old file or the new, never half."""
    target = meta_path(results)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_ONLY)
    try:
        os.write(fd, orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
