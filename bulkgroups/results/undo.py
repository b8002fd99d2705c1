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
from bulkgroups.planning.restore import Change, Restore, Unrestorable, changes_of, restore
from bulkgroups.planning.snapshot import read_snapshots, snapshot_path
from bulkgroups.results.file import MAX_ROW, Record, ResultsReader, decode

Format = Literal["csv", "jsonl"]
COLUMNS: Final = ("op", "group", "member", "to_group")

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
    def from_outcome(cls, record: Record) -> InputRow | None:
        """The input row a results line was made from; None if the line lacks it."""
        if not (record.op and record.group):
            return None
        return cls(record.op, record.group, record.member, record.to_group)


def records_change(record: Record) -> bool:
    """Whether a results line says something changed: an `ok` row, or a `move_all` (of any
    status) that lists members it moved."""
    if record.op == _MOVE_ALL and (record.moved or record.left):
        return True
    return record.status is Status.OK and (record.op in _SINGLE or record.op == _MOVE_ALL)


def reverse(record: Record) -> tuple[InputRow, ...]:
    """The rows that undo one results line, latest change first; () when it changed nothing
    or does not say what it changed (an `ok` move_all from before `moved` was recorded)."""
    if not records_change(record):
        return ()
    op, group, member, to_group = record.op, record.group, record.member, record.to_group
    if not group:
        return ()
    if op == _MOVE_ALL:
        if not to_group:
            return ()
        # `moved` left `group` and joined `to_group`: move them back. `left` only left
        # (guests, or members already in `to_group`): adding them back is all it takes, and
        # taking them out of `to_group` would undo more than the run did.
        back = [InputRow("move", to_group, m, group) for m in reversed(record.moved)]
        back += [InputRow("add", group, m) for m in reversed(record.left)]
        return tuple(back)
    if not member:
        return ()
    if op == Op.REMOVE.value:
        return (InputRow("add", group, member),)
    if op == Op.ADD.value:
        return (InputRow("remove", group, member),)
    if not to_group:
        return ()
    if norm_id(member) in {norm_id(n) for n in record.left}:
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
    # With the run's snapshots: changes the API cannot reverse (each with why), and changes
    # of nothing (the member was already so before the run), neither written as a row.
    not_restorable: tuple[Unrestorable, ...] = ()
    unchanged: int = 0
    from_snapshot: bool = False

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

    def add(self, record: Record) -> None:
        self.lines += 1
        latest, row = self.latest, record.row
        if row >= len(latest):
            latest.frombytes(bytes((max(row + 1, 2 * len(latest)) - len(latest)) * 4))
        if latest[row]:
            self.lengths[latest[row] - 1] = 0  # replaced by this line
            latest[row] = 0
        if not records_change(record):
            return
        self.starts.append(record.offset)
        self.lengths.append(record.size)
        listed = record.op == _MOVE_ALL and (record.moved or record.left)
        if not listed:
            latest[row] = len(self.starts)
        # else: members a move_all moved stay moved, whatever comes after (module notes).

    def backwards(self) -> Iterator[tuple[int, int]]:
        for i in range(len(self.starts) - 1, -1, -1):
            if self.lengths[i]:
                yield self.starts[i], self.lengths[i]


def _index(results: Path, max_row: int, require_lines: bool) -> _Index:
    index = _Index()
    reader = ResultsReader(results, max_row=max_row, require_lines=require_lines)
    for record in reader:
        index.add(record)
    index.unreadable = reader.skipped
    return index


def _read_back(
    f: IO[bytes], spans: Iterator[tuple[int, int]]
) -> Iterator[tuple[int, bytes]]:
    """The bytes of each (start, length), for spans that go backwards through the file:
    one read a block, not one a line."""
    buf, lo, hi = b"", 0, 0
    for start, length in spans:
        if not (lo <= start and start + length <= hi):
            hi = start + length
            lo = max(0, hi - max(_BLOCK, length))
            f.seek(lo)
            buf = f.read(hi - lo)
        yield start, buf[start - lo : start - lo + length]


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


def write_undo(results: Path, out: Path, *, fmt: Format, force: bool = False,
               max_row: int = MAX_ROW, require_lines: bool = True,
               kind: str | None = None) -> UndoSummary:
    """Write to `out` the rows that undo what `results` records as done, latest first.
    `max_row`: the most rows the run's input can have (`file.max_row_of(meta)`);
    `require_lines`: an empty file is an error (off when its metadata says it is a run's);
    `kind`: the target's, from the metadata. When the run left snapshots of its groups, the
    rows restore each changed member to its state before the run (`planning.restore`).
    Raises ResultsFileError when the results cannot be read or are not results, OSError when
    `out` cannot be written, OutputExists when `out` is there and `force` is off."""
    if not force and out.exists():
        raise OutputExists(str(out))
    index = _index(results, max_row, require_lines)
    snapshots = read_snapshots(snapshot_path(results))
    written: Counter[str] = Counter()
    undone: Counter[str] = Counter()
    cannot = 0
    recorded: list[list[Change]] = []  # latest first, as the file is read back
    with InputFileWriter(out, fmt, force=force) as writer, open(results, "rb") as f:
        for start, line in _read_back(f, index.backwards()):
            record = decode(line, start, max_row=max_row)
            if not isinstance(record, Record) or not (rows := reverse(record)):
                cannot += 1  # changed since the first pass, or an old move_all line
                continue
            undone[record.op] += 1
            if snapshots:
                recorded.append(changes_of(record.op, record.group, record.member,
                                           record.to_group, record.moved, record.left))
                continue
            for row in rows:
                writer.write(row)
                written[row.op] += 1
        changes = [c for cs in reversed(recorded) for c in cs]
        exact = restore(changes, snapshots, key=norm_id, kind=kind or "") if snapshots else None
        for row in _restoring_rows(exact):
            writer.write(row)
            written[row.op] += 1
    return UndoSummary(
        written=dict(written),
        undone=dict(undone),
        cannot=cannot,
        lines=index.lines,
        unreadable=index.unreadable,
        not_restorable=tuple(exact.cannot) if exact else (),
        unchanged=exact.unchanged if exact else 0,
        from_snapshot=exact is not None,
    )


def _restoring_rows(exact: Restore | None) -> Iterator[InputRow]:
    if exact is None:
        return
    for op, group, member, to_group in exact.rows:
        yield InputRow(op, group, member, to_group)
    # Groups the run never read (no snapshot): put back what the results say it changed.
    for c in reversed(exact.unsnapped):
        yield InputRow("remove" if c.joined else "add", c.group, c.member)


def write_rows(path: Path, rows: Iterator[InputRow], *, fmt: Format, force: bool) -> int:
    """Write `rows` as an input file; the number written."""
    with InputFileWriter(path, fmt, force=force) as writer:
        for row in rows:
            writer.write(row)
    return writer.written
