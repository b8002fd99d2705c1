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

    __slots__ = ("_cols", "_gen", "_make", "_width", "lines")

    def __init__(self, lines: LineReader) -> None:
        self.lines = lines
        self._make: Make | None = None
        self._cols = (-1, -1, -1, -1)
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
        self._width = width
        rows: Iterator[Row | InvalidRow] = self._gen
        return rows

    def _run(self) -> Iterator[Any]:
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
        make: Make | None = None
        i_op = i_group = i_member = i_to = width = -1
        key_columns: tuple[int, ...] = ()
        lineno = 0
        row = 0
        rec: list[str] | str
        try:
            while True:
                if pending:
                    b = pending.popleft()
                    if b is TOO_LONG:
                        b = b""
                else:
                    b = readline(limit)
                    if not b:
                        return
                lineno += 1
                start = lineno
                if len(b) > max_bytes:
                    b = lines.clip(b)
                if not b or b is TOO_LONG:
                    rec = too_long
                else:
                    try:
                        s = b.decode()
                    except UnicodeDecodeError:
                        s = ""
                        rec = "not valid UTF-8"
                    if not s:
                        pass
                    elif "\x00" in s:
                        rec = "contains a NUL byte"
                    elif '"' not in s:
                        if not s.strip(_BLANK):
                            continue
                        body = s.rstrip("\r\n")
                        rec = BARE_CR if "\r" in body else body.split(",")
                    else:
                        rec, lineno = self._quoted(reader, parts, s, len(b), lineno, key_columns)
                        if not rec:
                            continue  # a blank record

                if make is None:
                    yield start, rec
                    make = self._make
                    if make is None:
                        return  # header() only: rows() was never asked for
                    i_op, i_group, i_member, i_to = self._cols
                    width = self._width
                    key_columns = tuple(i for i in self._cols if i >= 0)
                    continue

                row += 1
                if isinstance(rec, str):
                    yield InvalidRow(row, start, rec)
                    continue
                n = len(rec)
                if n != width:
                    if n < width:
                        rec.extend([""] * (width - n))
                    elif any(x.strip() for x in rec[width:]):
                        yield _invalid(
                            row,
                            start,
                            f"{n} fields, header has {width}",
                            rec,
                            i_op,
                            i_group,
                            i_member,
                            i_to,
                        )
                        continue
                yield make(
                    row,
                    start,
                    rec[i_op].strip() if i_op >= 0 else "",
                    rec[i_group].strip(),
                    rec[i_member].strip() if i_member >= 0 else "",
                    rec[i_to].strip() if i_to >= 0 else "",
                )
        finally:
            lines.f.close()

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
        lines = self.lines
        readline = lines.readline
        pending = lines.pending
        max_bytes = lines.max_line_bytes
        start = lineno
        texts = [first]
        more: list[bytes] = []  # lines after the first, to read again if this fails
        fields: list[str] | None = None
        reason = "unclosed quote"
        while True:
            parts.extend(texts)
            try:
                fields = next(reader)
                parts.clear()
                break
            except IndexError:
                pass
            except csv.Error as exc:
                parts.clear()
                # The csv module's words for a bare CR speak of its own open() modes.
                reason = BARE_CR if "new-line character" in str(exc) else f"bad quoting: {exc}"
                break
            if len(texts) >= MAX_RECORD_LINES:
                reason = f"unclosed quote (record runs past {MAX_RECORD_LINES} lines)"
                break
            b = pending.popleft() if pending else readline(lines.limit)
            if not b:
                break
            if len(b) > max_bytes:
                b = lines.clip(b)
            more.append(b)
            if b is TOO_LONG or b"\x00" in b:
                break
            try:
                texts.append(b.decode())
            except UnicodeDecodeError:
                break
            lineno += 1
            size += len(b)
            if size > max_bytes:
                reason = f"unclosed quote (record runs past {max_bytes} bytes)"
                break

        if fields is not None and more and _line_break_in(fields, key_columns):
            fields = None
            reason = "line break inside a quoted value (unclosed quote?)"
        if fields is None:
            if more:
                pending.extendleft(reversed(more))
            return reason, start
        if not "".join(fields).strip():
            return [], lineno
        return fields, lineno


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
