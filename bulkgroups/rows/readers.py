"""Input rows from CSV or JSONL, streamed: one Row or InvalidRow per record, in order.

Bad data never raises: it becomes an InvalidRow with the record's line and the reason.
Only a file that cannot be read at all (cannot open it; a CSV without a usable header)
raises InputError, before the first row.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import orjson

from bulkgroups.display import shown
from bulkgroups.identity import id_check, id_problem, norm_id
from bulkgroups.model import InvalidRow, Op, Row, TargetKind
from bulkgroups.rows.csvreader import BARE_CR, TOO_LONG, CsvRows, LineReader, Make

Format = Literal["csv", "jsonl"]

_BOM = b"\xef\xbb\xbf"
_COLUMNS = ("op", "group", "member", "to_group")
_OPS = {op.value: op for op in Op}
_NEEDS_MEMBER = (Op.REMOVE, Op.ADD, Op.MOVE)
_NEEDS_TO_GROUP = (Op.MOVE, Op.MOVE_ALL)


class InputError(Exception):
    """The input file cannot be read at all; names the file (and line)."""


def detect_format(path: Path) -> Format | None:
    """The format a file name implies: .csv, or .jsonl / .ndjson; None for anything else."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    return None


def read_rows(
    path: Path,
    *,
    fmt: Format,
    kind: TargetKind,
    default_op: Op | None = None,
    max_line_bytes: int = 65536,
    upto: int | None = None,
) -> Iterator[Row | InvalidRow]:
    """Rows of `path`, one per record. Opens the file and checks a CSV header at once, so
    InputError comes from this call, not from the first `next()`. The file is closed when
    the rows run out or the iterator is closed. `upto`: read only the file's first `upto`
    bytes (what a run fingerprinted), whatever is appended to it meanwhile."""
    try:
        f = open_input(path, upto)
    except OSError as exc:
        raise InputError(f"{shown(path)}: cannot open: {exc.strerror or exc}") from None
    try:
        if f.peek(3)[:3] == _BOM:
            f.read(3)
        lines = LineReader(f, max_line_bytes=max_line_bytes)
        make = _validator(kind, default_op)
        if fmt == "csv":
            return _csv_rows(path, CsvRows(lines), make, default_op)
        return _jsonl_rows(lines, make)
    except BaseException:
        f.close()
        raise


# --- CSV ------------------------------------------------------------------------------


def _csv_rows(
    path: Path, reader: CsvRows, make: Make, default_op: Op | None
) -> Iterator[Row | InvalidRow]:
    first = reader.header()
    if first is None:
        raise InputError(f"{shown(path)}: no header row (the file is empty)")
    line, header = first
    if header == BARE_CR:
        # Most likely a file whose every line ends in CR: read as one long header line, it
        # would run as a header and no rows, and exit 0.
        raise InputError(
            f"{shown(path)}: line {line}: the header holds a bare carriage return (CR): do the "
            "lines end in CR only, as old Mac programs write them? Save the file with LF or CRLF "
            "line endings"
        )
    if isinstance(header, str):
        raise InputError(f"{shown(path)}: line {line}: cannot read the header: {header}")
    at: dict[str, int] = {}
    for i, name in enumerate(header):
        name = name.strip().lower()
        if name in _COLUMNS:
            if name in at:
                raise InputError(f"{shown(path)}: line {line}: column {name!r} appears twice")
            at[name] = i
    if "group" not in at:
        raise InputError(
            f"{shown(path)}: line {line}: the header has no 'group' column; the first line must "
            "name the columns: op,group,member,to_group"
        )
    if "op" not in at and default_op is None:
        raise InputError(
            f"{shown(path)}: line {line}: the header has no 'op' column and no default op is set "
            "([input] op)"
        )
    return reader.rows(
        make,
        op=at.get("op", -1),
        group=at["group"],
        member=at.get("member", -1),
        to_group=at.get("to_group", -1),
        width=len(header),
    )


# --- JSONL ----------------------------------------------------------------------------


def _jsonl_rows(lines: LineReader, make: Make) -> Iterator[Row | InvalidRow]:
    readline = lines.readline
    limit = lines.limit
    max_bytes = lines.max_line_bytes
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    lineno = 0
    row = 0
    with lines.f:
        while True:
            b = readline(limit)
            if not b:
                return
            lineno += 1
            if len(b) > max_bytes and lines.clip(b) is TOO_LONG:
                row += 1
                yield InvalidRow(row, lineno, f"line longer than {max_bytes} bytes")
                continue
            try:
                obj = loads(b)
            except decode_error as exc:
                if not b.strip():
                    continue
                row += 1
                yield InvalidRow(row, lineno, _json_problem(b, exc))
                continue
            row += 1
            if type(obj) is not dict:
                yield InvalidRow(row, lineno, "not a JSON object")
                continue
            op = obj.get("op")
            group = obj.get("group")
            member = obj.get("member")
            to_group = obj.get("to_group")
            if len(obj) != (op is not None) + (group is not None) + (member is not None) + (
                to_group is not None
            ):
                op, group, member, to_group = _loose_keys(obj, op, group, member, to_group)
            if (
                isinstance(op, str)
                and isinstance(group, str)
                and isinstance(member, str)
                and isinstance(to_group, str)
            ):
                yield make(row, lineno, op.strip(), group.strip(), member.strip(), to_group.strip())
                continue
            values = (op, group, member, to_group)
            if any(v is not None and type(v) is not str for v in values):
                bad = [
                    k
                    for k, v in zip(_COLUMNS, values, strict=True)
                    if v is not None and type(v) is not str
                ]
                yield InvalidRow(
                    row,
                    lineno,
                    "; ".join(f"{k}: must be a string" for k in bad),
                    *(v.strip() if type(v) is str else "" for v in values),
                )
                continue
            yield make(row, lineno, *(v.strip() if type(v) is str else "" for v in values))


def _loose_keys(obj: dict[str, object], *values: object) -> tuple[object, object, object, object]:
    """Fill the columns not found under their exact names from keys that differ only in
    case or surrounding spaces ("Group", " member")."""
    loose: dict[str, object] = {}
    for k, v in obj.items():
        name = k.strip().lower()
        if name in _COLUMNS and name not in loose:
            loose[name] = v
    op, group, member, to_group = (
        loose.get(name) if v is None else v for name, v in zip(_COLUMNS, values, strict=True)
    )
    return op, group, member, to_group


def _json_problem(b: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        b.decode()
    except UnicodeDecodeError:
        return "not valid UTF-8"
    if b"\x00" in b:
        return "contains a NUL byte"
    reason = f"not valid JSON: {exc.msg} at column {exc.colno}"
    if b"\r" in b.rstrip(b"\r\n"):
        reason += " (a bare carriage return inside the line: do the lines end in CR only?)"
    elif not b.endswith(b"\n"):
        reason += " (last line has no line break: truncated?)"
    return reason


# --- validation -----------------------------------------------------------------------


def _validator(kind: TargetKind, default_op: Op | None) -> Make:
    """The per-row check, with what does not change from row to row bound once."""
    valid = id_check(kind)
    # Groups repeat from row to row where members do not: remember the groups' answers.
    valid_group = functools.lru_cache(maxsize=4096)(valid)
    ops = _OPS
    remove, add, move, move_all = Op.REMOVE, Op.ADD, Op.MOVE, Op.MOVE_ALL

    def make(
        row: int, line: int, op_s: str, group: str, member: str, to_group: str
    ) -> Row | InvalidRow:
        op = (ops.get(op_s) or ops.get(op_s.lower())) if op_s else default_op
        if op is remove or op is add:
            if group and member and not to_group and valid_group(group) and valid(member):
                return Row(row, line, op, group, member)
        elif op is move:
            if (
                group
                and member
                and to_group
                and valid_group(group)
                and valid(member)
                and valid_group(to_group)
                and norm_id(group) != norm_id(to_group)
            ):
                return Row(row, line, op, group, member, to_group)
        elif (
            op is move_all
            and group
            and not member
            and to_group
            and valid_group(group)
            and valid_group(to_group)
            and norm_id(group) != norm_id(to_group)
        ):
            return Row(row, line, op, group, "", to_group)
        reason = _why(kind, op, op_s, group, member, to_group)
        return InvalidRow(row, line, reason, op.value if op else op_s, group, member, to_group)

    return make


def _why(kind: TargetKind, op: Op | None, op_s: str, group: str, member: str, to_group: str) -> str:
    """Everything wrong with a row that `make` turned down, most basic first."""
    problems: list[str] = []
    if op is None:
        problems.append(f"unknown op {_show(op_s)}" if op_s else "missing op")
    else:
        if not group:
            problems.append(f"missing group for {op}")
        if op in _NEEDS_MEMBER and not member:
            problems.append(f"missing member for {op}")
        if op is Op.MOVE_ALL and member:
            problems.append("member must be empty for move_all")
        if op in _NEEDS_TO_GROUP and not to_group:
            problems.append(f"missing to_group for {op}")
        if op not in _NEEDS_TO_GROUP and to_group:
            problems.append(f"to_group is only for move and move_all, not {op}")
    for name, value in (("group", group), ("member", member), ("to_group", to_group)):
        problem = id_problem(kind, value) if value else None
        if problem is not None:
            problems.append(f"{name}: {problem}")
    if op in _NEEDS_TO_GROUP and group and norm_id(group) == norm_id(to_group):
        problems.append("to_group is the same as group")
    return "; ".join(problems) or "invalid row"


def _show(value: str, *, limit: int = 40) -> str:
    """`value` quoted for a reason, cut short: a reason is one line of a report."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit])[:-1] + "...'"


def count_lines(path: Path, upto: int | None = None) -> int:
    """Newlines in the file (in its first `upto` bytes), counted without parsing: no file
    holds more records than this (plus one for a last line without its newline)."""
    n = 0
    with open_input(path, upto) as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


class _Prefix(io.RawIOBase):
    """The first `size` bytes of an open file, as if the file ended there."""

    def __init__(self, raw: io.FileIO, size: int) -> None:
        super().__init__()
        self._raw = raw
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        got = self._raw.readinto(memoryview(buffer)[:n]) or 0
        self._left -= got
        return got

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_input(path: Path, upto: int | None = None) -> io.BufferedReader:
    """`path` opened for reading in binary; with `upto`, cut at that many bytes, so that a
    file appended to while a run reads it still ends where the run counted and hashed it."""
    if upto is None:
        return open(path, "rb")  # the caller closes it
    raw = open(path, "rb", buffering=0)  # noqa: SIM115
    return io.BufferedReader(_Prefix(raw, upto), buffer_size=1 << 16)
