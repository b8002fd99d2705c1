"""Records from a byte stream: physical lines with a length cap, and CSV records built from
them. Nothing here raises on bad data: a bad record comes out as (line, reason).

The file is read in binary one physical line at a time, so a line that is not UTF-8 spoils
only its own record, and a line without end is never held whole. Lines without a quote are
split on commas (what the csv module would do with them, only faster); lines with one go
through `csv.reader`, which pulls further lines for a quoted value that spans them.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Final

from bulkgroups.model import InvalidRow, Row

# A record may span this many lines at most; an unclosed quote is given up on there.
MAX_RECORD_LINES: Final = 100

# Stands in for a line that was too long, in place of its (discarded) bytes.
TOO_LONG: Final = b"\x00<line too long>"

# Why a record with a carriage return that ends no line (outside quotes) is unreadable.
BARE_CR: Final = "a bare carriage return (CR) outside quotes"

# Characters of a line that holds no value: only separators and whitespace.
_BLANK: Final = " \t\r\n\f\v,"

Record = tuple[int, list[str] | str]
# Turns the stripped (row, line, op, group, member, to_group) of a record into a row.
Make = Callable[[int, int, str, str, str, str], Row | InvalidRow]


class LineReader:
    """Physical lines of `f`, none longer than `max_line_bytes`, with push-back.

    Callers read `readline(limit)` directly for speed, take `pending` first, and pass any
    line longer than `max_line_bytes` through `clip`.
    """

    __slots__ = ("f", "limit", "max_line_bytes", "pending", "readline")

    def __init__(self, f: BinaryIO, *, max_line_bytes: int) -> None:
        self.f = f
        self.max_line_bytes = max_line_bytes
        # Room for the line break after a line of exactly max_line_bytes.
        self.limit = max_line_bytes + 2
        self.readline = f.readline
        self.pending: deque[bytes] = deque()

    def clip(self, line: bytes) -> bytes:
        """`line` if its content fits, else TOO_LONG after skipping the rest of the line."""
        if line is TOO_LONG:
            return line
        content = len(line)
        if line.endswith(b"\n"):
            content -= 2 if line.endswith(b"\r\n") else 1
            if content <= self.max_line_bytes:
                return line
            return TOO_LONG
        if content <= self.max_line_bytes:
            return line  # the last line, without a line break
        while True:  # skip to the end of the line without holding it
            rest = self.readline(65536)
            if not rest or rest.endswith(b"\n"):
                return TOO_LONG


class CsvRows:
    """CSV rows of a stream: `header()` first, then `rows(...)` once.

    Both read from one generator, so the per-row path is a single generator frame. A
    record that spans lines because of a line break inside one of the columns that hold
    ids is taken for an unclosed quote (no id holds a line break): only its first line is
    reported, and the lines after it are read again as records of their own instead of
    being swallowed.
    """

    __slots__ = ("_cols", "_gen", "_key_columns", "_make", "_width", "lines")

    def __init__(self, lines: LineReader) -> None:
        self.lines = lines
        self._make: Make | None = None
        self._cols = (-1, -1, -1, -1)
        self._key_columns: tuple[int, ...] = ()  # columns holding ids, once rows() set them
        self._width = 0
        self._gen = self._run()

    def header(self) -> Record | None:
        """(line, column names or why the header is unreadable); None for an empty file."""
        first: Record | None = next(self._gen, None)
        return first

    def rows(
        self, make: Make, *, op: int, group: int, member: int, to_group: int, width: int
    ) -> Iterator[Row | InvalidRow]:
        """The rows after the header. `op`, `member`, `to_group` are column indexes, -1
        for a column the header lacks; `width` is the header's field count."""
        self._make = make
        self._cols = (op, group, member, to_group)
        self._key_columns = tuple(i for i in self._cols if i >= 0)
        self._width = width
        rows: Iterator[Row | InvalidRow] = self._gen
        return rows

    def _run(self) -> Iterator[Any]:
        # The header record, then (once `rows()` has said how to read them) the rows: one
        # generator, so that `header()` and the rows share the records read.
        try:
            records = self._records()
            first = next(records, None)
            if first is None:
                return
            yield first
            if self._make is None:
                return  # header() only: rows() was never asked for
            yield from self._rows_of(records)
        finally:
            self.lines.f.close()

    def _rows_of(self, records: Iterator[Record]) -> Iterator[Row | InvalidRow]:
        make = self._make
        assert make is not None
        i_op, i_group, i_member, i_to = self._cols
        width = self._width
        row = 0
        for start, rec in records:
            row += 1
            if isinstance(rec, str):
                yield InvalidRow(row, start, rec)
                continue
            n = len(rec)
            if n != width:
                if n < width:
                    rec.extend([""] * (width - n))
                elif _has_values(rec, width):
                    reason = f"{n} fields, header has {width}"
                    yield _invalid(row, start, reason, rec, i_op, i_group, i_member, i_to)
                    continue
            yield make(
                row,
                start,
                rec[i_op].strip() if i_op >= 0 else "",
                rec[i_group].strip(),
                rec[i_member].strip() if i_member >= 0 else "",
                rec[i_to].strip() if i_to >= 0 else "",
            )

    def _records(self) -> Iterator[Record]:
        """(first line, fields or why unreadable) of every record that is not blank."""
        lines = self.lines
        readline = lines.readline
        limit = lines.limit
        max_bytes = lines.max_line_bytes
        pending = lines.pending
        too_long = f"line longer than {max_bytes} bytes"
        parts: deque[str] = deque()
        # One reader for the whole file, fed one record's lines at a time: it raises
        # IndexError when a quoted value needs a line it has not been given yet.
        reader = csv.reader(iter(parts.popleft, None), strict=True, skipinitialspace=True)
        lineno = 0
        rec: list[str] | str | None
        while True:
            if pending:
                b = pending.popleft()  # a line given back: TOO_LONG stands for a long one
            else:
                b = readline(limit)
                if not b:
                    return
            lineno += 1
            start = lineno
            if len(b) > max_bytes:
                b = lines.clip(b)
            if b is TOO_LONG:
                rec = too_long
            elif b'"' not in b:
                rec = _plain(b)
            else:
                s = _text(b)
                if s is None:
                    rec = _unreadable(b)
                else:
                    rec, lineno = self._quoted(reader, parts, s, len(b), lineno,
                                               self._key_columns)
                    if not rec:
                        continue  # a blank record
            if rec is not None:
                yield start, rec

    def _quoted(
        self,
        reader: Iterator[list[str]],
        parts: deque[str],
        first: str,
        size: int,
        lineno: int,
        key_columns: tuple[int, ...],
    ) -> tuple[list[str] | str, int]:
        """The record that starts with `first`, a line with a quote in it: its fields (an
        empty list when blank) or why it is unreadable, and the last line it took."""
        start = lineno
        more: list[bytes] = []  # lines after the first, to read again if this fails
        fields, reason, lineno = self._take_record(reader, parts, first, size, lineno, more)
        if fields is not None and more and _line_break_in(fields, key_columns):
            fields = None
            reason = "line break inside a quoted value (unclosed quote?)"
        if fields is None:
            if more:
                self.lines.pending.extendleft(reversed(more))
            return reason, start
        if not "".join(fields).strip():
            return [], lineno
        return fields, lineno

    def _take_record(
        self, reader: Iterator[list[str]], parts: deque[str], first: str, size: int,
        lineno: int, more: list[bytes],
    ) -> tuple[list[str] | None, str, int]:
        """Feed `reader` lines from `first` on until it has a record: (its fields or None,
        why not, the last line taken). Every line taken after `first` is put in `more`."""
        texts = [first]
        while True:
            parts.extend(texts)
            fields, reason = _next_fields(reader, parts)
            if fields is not None or reason is not None:
                return fields, reason or "", lineno
            if len(texts) >= MAX_RECORD_LINES:
                return None, f"unclosed quote (record runs past {MAX_RECORD_LINES} lines)", lineno
            text = self._continuation(more)
            if text is None:
                return None, "unclosed quote", lineno
            texts.append(text)
            lineno += 1
            size += len(more[-1])
            if size > self.lines.max_line_bytes:
                reason = f"unclosed quote (record runs past {self.lines.max_line_bytes} bytes)"
                return None, reason, lineno

    def _continuation(self, more: list[bytes]) -> str | None:
        """The next physical line as text, appended (as bytes) to `more`; None at the end of
        the file or for a line that cannot continue a record (too long, NUL, not UTF-8)."""
        lines = self.lines
        b = lines.pending.popleft() if lines.pending else lines.readline(lines.limit)
        if not b:
            return None
        if len(b) > lines.max_line_bytes:
            b = lines.clip(b)
        more.append(b)
        if b is TOO_LONG or b"\x00" in b:
            return None
        return _text(b)


def _next_fields(reader: Iterator[list[str]], parts: deque[str]
                 ) -> tuple[list[str] | None, str | None]:
    """The record `reader` makes of the lines in `parts`: (fields, None); (None, why) when
    they cannot be read; (None, None) when it needs another line."""
    try:
        fields = next(reader)
    except IndexError:
        return None, None
    except csv.Error as exc:
        parts.clear()
        # The csv module's words for a bare CR speak of its own open() modes.
        return None, BARE_CR if "new-line character" in str(exc) else f"bad quoting: {exc}"
    parts.clear()
    return fields, None


def _text(b: bytes) -> str | None:
    """The line as text; None when it is not UTF-8 or holds a NUL byte."""
    try:
        s = b.decode()
    except UnicodeDecodeError:
        return None
    return None if "\x00" in s else s


def _unreadable(b: bytes) -> str:
    """Why a line `_text` turned down cannot be read."""
    try:
        b.decode()
    except UnicodeDecodeError:
        return "not valid UTF-8"
    return "contains a NUL byte"


def _plain(b: bytes) -> list[str] | str | None:
    """The fields of a line without a quote (split on commas, as the csv module would), why
    it is unreadable, or None for a blank line."""
    try:
        s = b.decode()
    except UnicodeDecodeError:
        return "not valid UTF-8"
    if "\x00" in s:
        return "contains a NUL byte"
    if not s.strip(_BLANK):
        return None
    body = s.rstrip("\r\n")
    return BARE_CR if "\r" in body else body.split(",")


def _has_values(rec: list[str], width: int) -> bool:
    return any(x.strip() for x in rec[width:])


def _line_break_in(fields: list[str], columns: tuple[int, ...]) -> bool:
    n = len(fields)
    for i in columns:
        if i < n:
            value = fields[i].strip()
            if "\n" in value or "\r" in value:
                return True
    return False


def _invalid(row: int, line: int, reason: str, rec: list[str], *columns: int) -> InvalidRow:
    op, group, member, to_group = (rec[i].strip() if i >= 0 else "" for i in columns)
    return InvalidRow(row, line, reason, op, group, member, to_group)
