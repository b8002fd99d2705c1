"""Results in, the input that puts every recorded change back out.

`reverse` (pure) turns one results line into the rows that undo it. `write_undo` reads the
results file twice: a first pass keeps only where each line worth undoing starts (16 bytes a
row: a million rows cost about 16 MB), a second pass reads those lines back from the end of
the file in blocks, so the latest change is undone first.

Which lines count: a row's last line, like everywhere else (a row that failed and then went
ok on resume is undone once). One exception: a `move_all` line that lists members it moved
counts even when a later line follows for the same row. A `move_all` that failed halfway
really moved those members, and the resume that finishes it reads the group afresh, so its
line lists only the members it moved itself.
"""

from __future__ import annotations

import contextlib
import csv
import os
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson

from bulkgroups.identity import norm_id
from bulkgroups.model import Op, Status

Format = Literal["csv", "jsonl"]
COLUMNS: Final = ("op", "group", "member", "to_group")

_OK: Final = Status.OK.value
_SINGLE: Final = frozenset({Op.REMOVE.value, Op.ADD.value, Op.MOVE.value})
_MOVE_ALL: Final = Op.MOVE_ALL.value
_BLOCK: Final = 1 << 20  # bytes read at a time when walking the file backwards
_OWNER_ONLY: Final = 0o600  # ids of people: readable by the owner only, like the results


@dataclass(frozen=True, slots=True)
class InputRow:
    """One row of an input file, as `bulkgroups run` reads it."""

    op: str
    group: str
    member: str = ""
    to_group: str = ""

    @classmethod
    def from_outcome(cls, obj: object) -> InputRow | None:
        """The input row a results line was made from; None if the line lacks it."""
        if not isinstance(obj, dict):
            return None
        op, group = obj.get("op"), obj.get("group")
        member, to_group = obj.get("member") or "", obj.get("to_group") or ""
        if not (isinstance(op, str) and op and isinstance(group, str) and group):
            return None
        if not (isinstance(member, str) and isinstance(to_group, str)):
            return None
        return cls(op, group, member, to_group)


def _names(value: object) -> list[str]:
    """A `moved` / `left` list; absent or null (older files) is empty."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and v]


def records_change(obj: Mapping[str, Any]) -> bool:
    """Whether a results line says something changed: an `ok` row, or a `move_all` (of any
    status) that lists members it moved."""
    if obj.get("op") == _MOVE_ALL and (_names(obj.get("moved")) or _names(obj.get("left"))):
        return True
    return obj.get("status") == _OK and (obj.get("op") in _SINGLE or obj.get("op") == _MOVE_ALL)


def reverse(obj: Mapping[str, Any]) -> tuple[InputRow, ...]:
    """The rows that undo one results line, latest change first; () when it changed nothing
    or does not say what it changed (an `ok` move_all from before `moved` was recorded)."""
    if not records_change(obj):
        return ()
    op = obj.get("op")
    group, member, to_group = obj.get("group"), obj.get("member"), obj.get("to_group")
    if not isinstance(group, str) or not group:
        return ()
    if op == _MOVE_ALL:
        if not isinstance(to_group, str) or not to_group:
            return ()
        # `moved` left `group` and joined `to_group`: move them back. `left` only left
        # (guests, or members already in `to_group`): adding them back is all it takes, and
        # taking them out of `to_group` would undo more than the run did.
        back = [InputRow("move", to_group, m, group) for m in reversed(_names(obj.get("moved")))]
        back += [InputRow("add", group, m) for m in reversed(_names(obj.get("left")))]
        return tuple(back)
    if not isinstance(member, str) or not member:
        return ()
    if op == Op.REMOVE.value:
        return (InputRow("add", group, member),)
    if op == Op.ADD.value:
        return (InputRow("remove", group, member),)
    if not isinstance(to_group, str) or not to_group:
        return ()
    if norm_id(member) in {norm_id(n) for n in _names(obj.get("left"))}:
        # A move whose member was already in `to_group` only left `group`.
        return (InputRow("add", group, member),)
    return (InputRow("move", to_group, member, group),)


class Trust(Enum):
    """Whether `ok` rows of the run prove the change happened (see `trust_of`)."""

    EXACT = "exact"
    NO_PRECHECK = "no-precheck"  # DocSpace without precheck: ok may be a change of nothing
    UNKNOWN = "unknown"  # no metadata, or it does not say


def trust_of(meta: Mapping[str, Any] | None) -> Trust:
    """DocSpace answers 200 to removing a non-member and to adding a member, so its `ok` is
    only proof of a change when the run read the group first (`precheck`). Adaxes says when
    nothing changed, so its `ok` always is."""
    if meta is None:
        return Trust.UNKNOWN
    target = meta.get("target")
    kind = target.get("kind") if isinstance(target, dict) else None
    if kind == "adaxes":
        return Trust.EXACT
    limits = meta.get("limits")
    precheck = limits.get("precheck") if isinstance(limits, dict) else None
    if precheck is True:
        return Trust.EXACT
    if precheck is False and kind == "docspace":
        return Trust.NO_PRECHECK
    return Trust.UNKNOWN


@dataclass(frozen=True, slots=True)
class UndoSummary:
    written: Mapping[str, int]  # rows written, by their op
    undone: Mapping[str, int]  # results lines undone, by the op they record
    cannot: int  # lines recording a change without saying what (old move_all lines)
    lines: int  # readable results lines
    unreadable: int  # torn or damaged lines, skipped

    @property
    def total(self) -> int:
        return sum(self.written.values())


class OutputExists(Exception):
    """The output file is there already and overwriting was not asked for."""


# -- pass 1: where the lines to undo are -----------------------------------------------------


@dataclass(slots=True)
class _Index:
    """Start and length of each line to undo, in file order; a length of 0 marks a line a
    later line of the same row replaced."""

    starts: array[int] = field(default_factory=lambda: array("Q"))
    lengths: array[int] = field(default_factory=lambda: array("I"))
    # Per row: 1 + the index of its last line's entry, 0 if that line changed nothing.
    latest: array[int] = field(default_factory=lambda: array("I"))
    lines: int = 0
    unreadable: int = 0

    def add(self, line: bytes, start: int, length: int) -> None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.unreadable += 1
            return
        row = obj.get("row") if isinstance(obj, dict) else None
        if type(row) is not int or row <= 0 or not isinstance(obj.get("status"), str):
            self.unreadable += 1
            return
        self.lines += 1
        latest = self.latest
        if row >= len(latest):
            latest.frombytes(bytes((max(row + 1, 2 * len(latest)) - len(latest)) * 4))
        if latest[row]:
            self.lengths[latest[row] - 1] = 0  # replaced by this line
            latest[row] = 0
        if not records_change(obj):
            return
        self.starts.append(start)
        self.lengths.append(length)
        listed = obj.get("op") == _MOVE_ALL and (
            _names(obj.get("moved")) or _names(obj.get("left"))
        )
        if not listed:
            latest[row] = len(self.starts)
        # else: members a move_all moved stay moved, whatever comes after (module notes).

    def backwards(self) -> Iterator[tuple[int, int]]:
        for i in range(len(self.starts) - 1, -1, -1):
            if self.lengths[i]:
                yield self.starts[i], self.lengths[i]


def _index(results: Path) -> _Index:
    index = _Index()
    offset = 0
    with open(results, "rb") as f:
        for line in f:
            start = offset
            offset += len(line)
            if line.strip():
                index.add(line, start, len(line))
    return index


def _read_back(f: IO[bytes], spans: Iterator[tuple[int, int]]) -> Iterator[bytes]:
    """The bytes of each (start, length), for spans that go backwards through the file:
    one read a block, not one a line."""
    buf, lo, hi = b"", 0, 0
    for start, length in spans:
        if not (lo <= start and start + length <= hi):
            hi = start + length
            lo = max(0, hi - max(_BLOCK, length))
            f.seek(lo)
            buf = f.read(hi - lo)
        yield buf[start - lo : start - lo + length]


# -- output ---------------------------------------------------------------------------------


_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def warn(message: str) -> None:
    from bulkgroups.cli.console import err

    err.print(f"bulkgroups: warning: {message}", markup=False)


class InputFileWriter:
    """Writes an input file (CSV with a header, or JSONL) to a temporary file beside the
    target and moves it into place whole at the end, so an interrupted write leaves no half
    file behind for someone to run. Without `force`, an existing file is never replaced,
    not even one that appeared while this was writing."""

    def __init__(self, path: Path, fmt: Format, *, force: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.force = force
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._f: IO[str] | None = None
        self._csv: Any = None
        self.skipped = 0  # rows held back because a value would run as a spreadsheet formula
        self.written = 0

    def __enter__(self) -> InputFileWriter:
        if not self.force and self.path.exists():
            raise OutputExists(str(self.path))
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _OWNER_ONLY)
        self._f = open(fd, "w", encoding="utf-8", newline="")  # closed in __exit__
        if self.fmt == "csv":
            self._csv = csv.writer(self._f, lineterminator="\n")
            self._csv.writerow(COLUMNS)
        return self

    def write(self, row: InputRow) -> None:
        assert self._f is not None
        if any(v.startswith(_FORMULA_PREFIXES) for v in (row.op, row.group, row.member,
                                                         row.to_group)):
            # No valid id starts so; such a value came from a damaged results file and would
            # run as a formula in a spreadsheet. Held back, and said so at the end.
            self.skipped += 1
            return
        self.written += 1
        if self._csv is not None:
            self._csv.writerow((row.op, row.group, row.member, row.to_group))
            return
        obj = {"op": row.op, "group": row.group}
        if row.member:
            obj["member"] = row.member
        if row.to_group:
            obj["to_group"] = row.to_group
        self._f.write(orjson.dumps(obj).decode() + "\n")

    def __exit__(self, exc_type: object, *_: object) -> None:
        assert self._f is not None
        try:
            if exc_type is None:
                self._f.flush()
                os.fsync(self._f.fileno())
            self._f.close()
            if exc_type is None:
                self._commit()
                if self.skipped:
                    warn(f"{self.skipped:,} rows held back from {self.path}: a value began "
                         "with =, +, -, @ or a control character (no valid id does)")
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()

    def _commit(self) -> None:
        if self.force:
            os.replace(self._tmp, self.path)
            return
        try:
            os.link(self._tmp, self.path)  # fails if the name is taken: never clobbers
        except FileExistsError:
            raise OutputExists(str(self.path)) from None
        except OSError:
            # A file system without hard links: the check in __enter__ has to do.
            os.replace(self._tmp, self.path)


# -- the whole -------------------------------------------------------------------------------


def write_undo(results: Path, out: Path, *, fmt: Format, force: bool = False) -> UndoSummary:
    """Write to `out` the rows that undo what `results` records as done, latest first.
    Raises OSError when the results cannot be read, OutputExists when `out` is there and
    `force` is off."""
    if not force and out.exists():
        raise OutputExists(str(out))
    index = _index(results)
    written: Counter[str] = Counter()
    undone: Counter[str] = Counter()
    cannot = 0
    with InputFileWriter(out, fmt, force=force) as writer, open(results, "rb") as f:
        for line in _read_back(f, index.backwards()):
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                cannot += 1  # changed since the first pass
                continue
            rows = reverse(obj)
            if not rows:
                cannot += 1
                continue
            undone[obj["op"]] += 1
            for row in rows:
                writer.write(row)
                written[row.op] += 1
    return UndoSummary(
        written=dict(written),
        undone=dict(undone),
        cannot=cannot,
        lines=index.lines,
        unreadable=index.unreadable,
    )


def write_rows(path: Path, rows: Iterator[InputRow], *, fmt: Format, force: bool) -> int:
    """Write `rows` as an input file; the number written."""
    with InputFileWriter(path, fmt, force=force) as writer:
        for row in rows:
            writer.write(row)
    return writer.written
