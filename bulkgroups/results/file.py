"""The results file: one JSON line per finished row, appended whole and flushed as it is
finished; its metadata beside it; and the one reader every other module reads them with.

Reading: a line is an outcome only when it is whole JSON, an object, with a `row` in
1..`max_row` and a `status` that `Status` knows. Anything else is skipped and counted, never
guessed at: a line cut short by a crash (`torn`), or a row number the input cannot have
(`out_of_range`). A file that holds no outcome and is not merely one run's torn first line is
not a results file (a CSV, a job file, a binary): the reader says so (`ResultsFileError`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import orjson

from bulkgroups.model import Outcome, Status

OWNER_ONLY = 0o600

# Without a better bound (no metadata saying how many rows the input can have), a row number
# past this is taken for a damaged line, not for a reason to reserve gigabytes.
MAX_ROW: Final = 1 << 26

# Every line the writer makes starts so (`Outcome`'s first field): a results file whose lines
# all start so but none is whole is one run's torn first write, not someone else's file.
_OURS: Final = b'{"row":'
_STATUS: Final = {s.value: s for s in Status}  # a dict look-up: 10x cheaper than Status(x)

_REASONS: Final = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
    errno.EFBIG: "file too large",
}


def reason_of(exc: OSError) -> str:
    """A short, stable reason for an OS error: "disk full", not "[Errno 28] ..."."""
    return _REASONS.get(exc.errno or 0) or exc.strerror or type(exc).__name__


class ResultsFileError(ValueError):
    """A results file or its metadata cannot be used as one: missing, damaged, of another
    kind, or in a folder that cannot be written. Nothing was sent; the CLI exits 2 with the
    message, which names the file and what is wrong, on one line."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class ResultsUnwritable(OSError):
    """An outcome could not be written to the results file (disk full, I/O error...). The run
    must stop at once: rows sent from now on would have no record. The file is left ending
    on a whole line, so `resume` finishes it once there is room.

    An OSError (with the errno of the write that failed), so that code which handles "the
    disk said no" catches it as it would the raw error."""

    def __init__(self, path: Path, reason: str, code: int | None = None) -> None:
        super().__init__(code, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write the results: {self.reason} ({self.path})"


def meta_path(results: Path) -> Path:
    return results.with_name(results.name.removesuffix(".jsonl") + ".meta.json")


def selection_path(results: Path) -> Path:
    """The rows a job with `[input] select` exported for this run (kept for resume)."""
    return results.with_name(results.name.removesuffix(".jsonl") + ".selected.jsonl")


def companions(results: Path) -> tuple[Path, ...]:
    """The files that belong to a results file and go with it: its metadata (and a metadata
    write cut short), the rows a selecting job exported for it, its group snapshots and a
    plan written for review. Lock files remove themselves (see `lock`)."""
    meta = meta_path(results)
    stem = results.name.removesuffix(".jsonl")
    return (meta, meta.with_name(meta.name + ".tmp"), selection_path(results),
            results.with_name(f"{stem}.snapshot.jsonl.gz"),
            results.with_name(f"{stem}.plan.jsonl"))


# -- writing ---------------------------------------------------------------------------------


class ResultsWriter:
    """Appends outcome lines with one unbuffered write per batch: each line reaches the kernel
    whole as soon as it is written, so a killed process leaves at most a torn last line.

    One writer a file (the run lock sees to it), so the writer knows where the file ends: when
    a write fails half way (a full disk), the file is cut back to its last whole line, so a
    later append cannot glue onto a half line."""

    __slots__ = ("_broken", "_end", "_fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._broken: ResultsUnwritable | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, OWNER_ONLY)
        except IsADirectoryError:
            raise ResultsFileError(path, "is a folder, not a results file") from None
        except OSError as exc:
            raise ResultsFileError(path, f"cannot write the results: {reason_of(exc)}") from None
        try:
            self._end = self._heal_torn_tail()
        except OSError as exc:
            os.close(self._fd)
            raise ResultsFileError(path, f"cannot write the results: {reason_of(exc)}") from None

    def _heal_torn_tail(self) -> int:
        # A previous run killed mid-write may have left a line without its newline; end it so
        # the next line starts clean (the reader skips the torn line).
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                os.write(self._fd, b"\n")
                size += 1
        return size

    def write(self, outcomes: Iterable[Outcome]) -> None:
        """Raises ResultsUnwritable; the outcomes of a call that raised are not recorded."""
        if self._broken is not None:
            raise self._broken
        data = b"".join(orjson.dumps(o, option=orjson.OPT_APPEND_NEWLINE) for o in outcomes)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self._broken = ResultsUnwritable(self.path, reason_of(exc), exc.errno)
            if len(view) < len(data):
                # Part of the batch went in: cut it off (shrinking needs no space). If even
                # that fails the next writer's `_heal_torn_tail` ends the half line instead.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._end)
            raise self._broken from None
        self._end += len(data)

    def close(self) -> None:
        """Never raises: the outcomes are in the kernel already."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


# Room kept beside the results for the outcomes of rows still in flight when the disk fills:
# a line is ~300 bytes; the rows that can still finish are those whose requests are out.
_LINE_BYTES = 512
_RESERVE_FLOOR = 64 * 1024
_RESERVE_CAP = 8 * 1024 * 1024


class ReservedWriter:
    """The results writer with a reserve file beside it (`RESULTS.jsonl.reserve`): when a
    write fails for want of room, `make_room` gives the reserve back, so the outcomes of the
    rows already sent are still written (and `undo` sees their changes) while the run stops.
    Without a reserve (no room even for it) a full disk loses those outcomes. A failed write
    leaves no part of its batch in the file (`ResultsWriter`), so the batch is written again
    whole."""

    __slots__ = ("_reserve", "_writer", "path")

    def __init__(self, path: Path, *, rows_out: int) -> None:
        self.path = path
        self._writer = ResultsWriter(path)
        self._reserve: Path | None = path.with_name(path.name + ".reserve")
        size = min(_RESERVE_CAP, _RESERVE_FLOOR + rows_out * _LINE_BYTES)
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_ONLY)
            try:
                # Never more than half the room left: the run itself needs the rest.
                disk = os.fstatvfs(fd)
                os.posix_fallocate(fd, 0, min(size, disk.f_bavail * disk.f_frsize // 2))
            finally:
                os.close(fd)
        except OSError:
            self._drop_reserve()

    def write(self, outcomes: list[Outcome]) -> None:
        """Raises ResultsUnwritable; then none of `outcomes` is in the file."""
        self._writer.write(outcomes)

    def make_room(self) -> bool:
        """After a failed write: give the reserve back and open the file again; True if there
        was a reserve to give."""
        if self._reserve is None:
            return False
        self._drop_reserve()
        self._writer.close()
        self._writer = ResultsWriter(self.path)
        return True

    def _drop_reserve(self) -> None:
        if self._reserve is not None:
            with contextlib.suppress(OSError):
                self._reserve.unlink()
            self._reserve = None

    def close(self) -> None:
        self._drop_reserve()
        self._writer.close()


# -- reading ---------------------------------------------------------------------------------


def _text(value: object) -> str:
    return value if type(value) is str else ""


def _names(value: object) -> tuple[str, ...]:
    if type(value) is not list:
        return ()  # absent or null (older files): nobody listed
    return tuple(v for v in value if type(v) is str and v)


@dataclass(frozen=True, slots=True)
class Record:
    """One whole outcome line read back: its row and status checked, where it sits in the
    file, and its other fields typed on access (a wrong type reads as empty), so reading a
    million lines builds a million small objects, not fifteen million checked fields."""

    row: int
    status: Status
    offset: int  # where the line starts in the results file
    size: int  # its bytes, newline included
    fields: Mapping[str, Any]  # the decoded line, for the typed properties below

    @property
    def line(self) -> int:
        value = self.fields.get("line")
        return value if type(value) is int else 0

    @property
    def key(self) -> str:
        return _text(self.fields.get("key"))

    @property
    def op(self) -> str:
        return _text(self.fields.get("op"))

    @property
    def group(self) -> str:
        return _text(self.fields.get("group"))

    @property
    def member(self) -> str:
        return _text(self.fields.get("member"))

    @property
    def to_group(self) -> str:
        return _text(self.fields.get("to_group"))

    @property
    def http_status(self) -> int | None:
        value = self.fields.get("http_status")
        return value if type(value) is int else None

    @property
    def attempts(self) -> int:
        value = self.fields.get("attempts")
        return value if type(value) is int and value > 0 else 0

    @property
    def error(self) -> str | None:
        value = self.fields.get("error")
        return value if type(value) is str else None

    @property
    def elapsed_ms(self) -> float | None:
        value = self.fields.get("elapsed_ms")
        return float(value) if isinstance(value, int | float) and type(value) is not bool else None

    @property
    def wait_ms(self) -> float | None:
        """The part of `elapsed_ms` the row waited for its turn (pacer, batch); None in files
        of versions that did not record it."""
        value = self.fields.get("wait_ms")
        return float(value) if isinstance(value, int | float) and type(value) is not bool else None

    @property
    def finished_at(self) -> str:
        return _text(self.fields.get("finished_at"))

    @property
    def moved(self) -> tuple[str, ...]:
        """move_all: who left `group` and joined `to_group`."""
        return _names(self.fields.get("moved"))

    @property
    def left(self) -> tuple[str, ...]:
        """move/move_all: who left `group` without joining `to_group`."""
        return _names(self.fields.get("left"))


# What `decode` says of a line that is not an outcome.
TORN: Final = 0
OUT_OF_RANGE: Final = 1
BLANK: Final = 2


def decode(line: bytes, offset: int = 0, *, max_row: int = MAX_ROW) -> Record | int:
    """The outcome a line records, or why it records none (TORN, OUT_OF_RANGE, BLANK)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return BLANK if not line.strip() else TORN
    if type(obj) is not dict:
        return TORN
    row, status_s = obj.get("row"), obj.get("status")
    status = _STATUS.get(status_s) if type(status_s) is str else None
    if type(row) is not int or status is None:
        return TORN
    if not 0 < row <= max_row:
        return OUT_OF_RANGE
    return _record(row, status, offset, len(line), obj)


# Building a Record through its slots' own setters, not the frozen __init__ (which goes
# through object.__setattr__ once a field): the same object, half the cost, and a million
# lines are read per resume. Only this module builds records so.
_SETTERS: Final = tuple(getattr(Record, name).__set__
                        for name in ("row", "status", "offset", "size", "fields"))
_new: Final = object.__new__


def _record(row: int, status: Status, offset: int, size: int, fields: Mapping[str, Any]
            ) -> Record:
    record: Record = _new(Record)
    set_row, set_status, set_offset, set_size, set_fields = _SETTERS
    set_row(record, row)
    set_status(record, status)
    set_offset(record, offset)
    set_size(record, size)
    set_fields(record, fields)
    return record


class ResultsReader:
    """The outcomes of a results file, in file order, read once as a stream; iterate it once.

    `max_row`: the most rows the input can have; a line naming a row past it is garbage
    (`out_of_range`). `require_lines`: an empty file is an error (report, undo), not a run that
    finished nothing yet (resume). Raises ResultsFileError: missing, a folder, unreadable, or
    not a results file (the last only once the whole file has been read)."""

    def __init__(self, path: Path, *, max_row: int = MAX_ROW, require_lines: bool = False
                 ) -> None:
        self.path = path
        self.max_row = max_row
        self.require_lines = require_lines
        self.records = 0
        self.torn = 0
        self.out_of_range = 0
        self._foreign = 0  # skipped lines that the writer cannot have begun

    def __iter__(self) -> Iterator[Record]:
        try:
            with open(self.path, "rb") as f:
                yield from self._records(f)
        except IsADirectoryError:
            raise ResultsFileError(self.path, "is a folder, not a results file") from None
        except FileNotFoundError:
            raise ResultsFileError(self.path, "cannot read it: no such file") from None
        except OSError as exc:
            raise ResultsFileError(self.path, f"cannot read it: {reason_of(exc)}") from None
        self._check()

    def _records(self, f: IO[bytes]) -> Iterator[Record]:
        head = f.read(4096).lstrip()
        if head and not head.startswith(b"{"):
            # A results line is a JSON object: this is a CSV, a job file, a binary... Said at
            # once, without reading a big file of another kind line by line.
            raise ResultsFileError(self.path, f"not a results file ({_looks_like(head)})")
        f.seek(0)
        offset, max_row = 0, self.max_row
        for line in f:
            found = decode(line, offset, max_row=max_row)
            offset += len(line)
            if type(found) is Record:
                self.records += 1
                yield found
            elif found == TORN:
                self.torn += 1
                self._foreign += not line.startswith(_OURS)
            elif found == OUT_OF_RANGE:
                self.out_of_range += 1

    def _check(self) -> None:
        if self.records:
            return
        if self._foreign:
            raise ResultsFileError(self.path, "not a results file (no line is a bulkgroups "
                                   "outcome)")
        if self.require_lines and not self.torn and not self.out_of_range:
            raise ResultsFileError(self.path, "is empty: no outcome recorded in it")

    @property
    def skipped(self) -> int:
        return self.torn + self.out_of_range


def _looks_like(head: bytes) -> str:
    if b"\0" in head:
        return "binary data"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    first = text.splitlines()[0][:40] if text.strip() else ""
    return f"it begins {first!r}"


def record_at(f: IO[bytes], offset: int, *, max_row: int = MAX_ROW) -> Record | None:
    """The outcome of the line at `offset` (found by an earlier read), or None when it is no
    longer one (the file changed under us: the row is not ours to guess)."""
    f.seek(offset)
    found = decode(f.readline(), offset, max_row=max_row)
    return found if type(found) is Record else None


# -- metadata --------------------------------------------------------------------------------


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


# The keys a metadata file may hold, with the type each must have when it is there.
_META_TYPES: Final[Mapping[str, type | tuple[type, ...]]] = {
    "job": str, "job_name": str, "input": str, "version": str, "input_fingerprint": dict,
    "target": dict, "limits": dict, "runs": list, "max_row": int,
}


def max_row_of(meta: Mapping[str, Any] | None) -> int:
    """The most rows the run's input can have, as the run recorded it; MAX_ROW without."""
    value = (meta or {}).get("max_row")
    return value if type(value) is int and value > 0 else MAX_ROW


def read_meta(results: Path) -> dict[str, Any] | None:
    """The run metadata beside `results`, or None when there is none. Raises
    ResultsFileError naming the metadata file when it is there but cannot be used: a folder,
    unreadable, empty, not JSON (truncated by a crash, a binary), or of the wrong shape."""
    path = meta_path(results)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ResultsFileError(path, "is a folder, not run metadata") from None
    except OSError as exc:
        raise ResultsFileError(path, f"cannot read it: {reason_of(exc)}") from None
    if not raw.strip():
        raise ResultsFileError(path, "is empty (a write cut short?); it should hold the run "
                               "metadata as JSON")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        what = "binary data" if b"\0" in raw else "not valid JSON (truncated?)"
        raise ResultsFileError(path, f"{what}; it should hold the run metadata") from None
    if not isinstance(data, dict):
        raise ResultsFileError(path, f"holds a JSON {type(data).__name__}, not the run "
                               "metadata object")
    for key, kind in _META_TYPES.items():
        value = data.get(key)
        if key in data and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ResultsFileError(path, f"{key!r} is not {_kind_name(kind)}")
    runs = data.get("runs", [])
    if not all(isinstance(r, dict) for r in runs):
        raise ResultsFileError(path, "'runs' holds an entry that is not an object")
    return data


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", dict: "an object", list: "a list", int: "an integer"}
    return names.get(kind, "a value") if isinstance(kind, type) else "a value"


def write_meta(results: Path, meta: Mapping[str, Any]) -> None:
    """Replace the metadata atomically: a crash leaves the old file or the new, never half.
    Raises ResultsFileError when the folder cannot be written."""
    target = meta_path(results)
    tmp = target.with_name(target.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_ONLY)
        try:
            data = orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except IsADirectoryError:
        raise ResultsFileError(target, "is a folder, not run metadata") from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ResultsFileError(target, f"cannot write it: {reason_of(exc)}") from None
