"""The one row source: the stream of rows a job stands for, built in one place.

`validate`, `run --dry-run`, `plan`, `run` and `resume` all take their rows from `rows_for`,
so they agree on every row's class: read and validated (a bad record is `invalid`), guarded
(a row naming a protected id is `invalid`, reason "protected"), deduplicated (a later copy of
a row is a `noop` "duplicate of row N"), and for a resume without the rows already final.

A run reads exactly the bytes it counted and fingerprinted: `InputSnapshot` takes the file's
size first and hashes that many bytes, and the run's reader stops at that size, so rows
appended to the input while the run goes are not part of it (neither of its `max_changes`
count nor of what it sends) and the fingerprint in the metadata still describes its input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkgroups.display import shown
from bulkgroups.job import Job
from bulkgroups.model import Item, Row
from bulkgroups.results.resume import FinishedRows, unfinished
from bulkgroups.rows.dedupe import dedupe
from bulkgroups.rows.guard import guard
from bulkgroups.rows.readers import InputError, open_input, read_rows


def rows_for(
    job: Job, *, resume_index: FinishedRows | None = None, upto: int | None = None
) -> Iterator[Item]:
    """Every row of the job's input, classed as `run` classes it, in input order.

    `resume_index`: leave out the rows it holds as final (dedupe comes first: a resume must
    see the rows a run finished to know which later rows repeat them). `upto`: read only
    the input's first `upto` bytes (a run's `InputSnapshot.size`). Raises InputError when
    the input cannot be read at all."""
    items = dedupe(guard(
        read_rows(job.input.path, fmt=job.input.format, kind=job.target.kind,
                  default_op=job.input.op, upto=upto),
        job.safety.protected,
    ))
    return unfinished(items, resume_index) if resume_index is not None else items


@dataclass(frozen=True, slots=True)
class Census:
    """What a stream of rows holds: rows in all, and rows that may change something."""

    rows: int
    changes: int


def census(items: Iterable[Item]) -> Census:
    """Counts `items` in one pass, holding none: every valid row counts as one change
    (invalid and duplicate rows send nothing)."""
    rows = changes = 0
    for item in items:
        rows += 1
        changes += type(item) is Row
    return Census(rows=rows, changes=changes)


@dataclass(frozen=True, slots=True)
class InputSnapshot:
    """The input a run reads: its first `size` bytes and their SHA-256."""

    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path, *, size: int | None = None) -> InputSnapshot:
        """The file as it is now (its size taken first, then exactly that many bytes
        hashed: bytes appended meanwhile are not in it), or its first `size` bytes. A file
        shorter than `size` gives a snapshot of what it has, which matches nothing. Raises
        InputError when the file cannot be read."""
        digest = hashlib.sha256()
        read = 0
        try:
            if size is None:
                size = path.stat().st_size
            with open_input(path, size) as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    read += len(chunk)
        except OSError as exc:
            raise InputError(f"{shown(path)}: cannot read: {exc.strerror or exc}") from None
        return cls(size=read, sha256=digest.hexdigest())

    @classmethod
    def from_json(cls, data: object) -> InputSnapshot | None:
        """The `input_fingerprint` of a results file's metadata, or None when it has none."""
        if not isinstance(data, dict):
            return None
        size, sha = data.get("size"), data.get("sha256")
        if type(size) is not int or size < 0 or not isinstance(sha, str):
            return None
        return cls(size=size, sha256=sha)

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256}

    def still_in(self, path: Path) -> bool:
        """The file still starts with exactly these bytes (it is unchanged, or only grew)."""
        return InputSnapshot.of(path, size=self.size) == self
