"""Which rows a results file already finished: a bit a row, the last line for a row winning.

The lines come from the one reader (`file.ResultsReader`), so resume and report agree on
every line: a line is an outcome only when it is whole JSON; a torn one is re-sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from bulkgroups.model import Item, Status
from bulkgroups.results.file import Record, ResultsReader

_FINAL = frozenset(s for s in Status if s.is_final)


class FinishedRows:
    """A bit array over row numbers 1..max_row, sized once: a million rows cost 125 kB, and
    no line can make it bigger (a row past max_row is garbage, counted, never stored)."""

    __slots__ = ("_bits", "count", "invalid", "max_row", "out_of_range", "torn")

    def __init__(self, max_row: int) -> None:
        self.max_row = max_row
        self._bits = bytearray(max_row // 8 + 1)
        self.count = 0
        self.invalid = 0  # invalid rows are final and never re-run, so each counts once
        self.torn = 0  # lines that are not whole JSON outcomes (a crash mid-write)
        self.out_of_range = 0  # lines naming a row the input cannot have

    def __contains__(self, row: object) -> bool:
        if not isinstance(row, int) or not 0 < row <= self.max_row:
            return False
        byte, bit = divmod(row, 8)
        return bool(self._bits[byte] & (1 << bit))

    def add(self, record: Record) -> None:
        """Take one outcome; the caller (the reader) has checked its row is in range."""
        self.add_all((record,))

    def add_all(self, records: Iterable[Record]) -> None:
        """Take outcomes in file order (one loop with its look-ups made once: it runs a
        million times a resume)."""
        bits, final, invalid = self._bits, _FINAL, Status.INVALID
        count, invalids = self.count, self.invalid
        for record in records:
            status = record.status
            byte, bit = divmod(record.row, 8)
            mask = 1 << bit
            if status in final:
                if not bits[byte] & mask:
                    bits[byte] |= mask
                    count += 1
                invalids += status is invalid
            elif bits[byte] & mask:
                bits[byte] &= ~mask & 0xFF
                count -= 1
        self.count, self.invalid = count, invalids

    @classmethod
    def from_results(cls, path: Path, *, input_rows: int) -> FinishedRows:
        """The finished rows of `path` for an input of at most `input_rows` rows. A missing
        file finishes nothing; raises ResultsFileError when it is not a results file."""
        index = cls(max(0, input_rows))
        if not path.exists():
            return index
        reader = ResultsReader(path, max_row=index.max_row)
        index.add_all(reader)
        index.torn, index.out_of_range = reader.torn, reader.out_of_range
        return index


def unfinished(items: Iterable[Item], done: FinishedRows) -> Iterator[Item]:
    """The rows still to do: those with no final outcome yet."""
    for item in items:
        if item.row not in done:
            yield item
