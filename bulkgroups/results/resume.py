"""Which rows a results file already finished: a bit a row, the last line for a row winning."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from bulkgroups.model import Item, Status

_FINAL = frozenset(s.value for s in Status if s.is_final)
# The writer always puts "row" first and "status" later on the same line; a regex finds both
# several times faster than decoding the whole object, and a line it cannot read is decoded.
_FAST = re.compile(rb'^\{"row":(\d+),.*?"status":"([a-z]+)"')


class FinishedRows:
    """A growable bit array over row numbers: a million rows cost 125 kB."""

    __slots__ = ("_bits", "count", "invalid", "torn")

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0
        self.invalid = 0  # invalid rows are final and never re-run, so each counts once
        self.torn = 0  # lines that could not be read (a crash mid-write)

    def _set(self, row: int, final: bool) -> None:
        byte, bit = divmod(row, 8)
        if byte >= len(self._bits):
            if not final:
                return
            self._bits.extend(bytes(byte - len(self._bits) + 1 + (len(self._bits) >> 1)))
        mask = 1 << bit
        was = bool(self._bits[byte] & mask)
        if final and not was:
            self._bits[byte] |= mask
            self.count += 1
        elif not final and was:
            self._bits[byte] &= ~mask & 0xFF
            self.count -= 1

    def __contains__(self, row: object) -> bool:
        if not isinstance(row, int):
            return False
        byte, bit = divmod(row, 8)
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << bit))

    def add_line(self, line: bytes) -> None:
        m = _FAST.match(line)
        if m is not None:
            self._record(int(m[1]), m[2].decode())
            return
        try:
            obj = orjson.loads(line)
            row, status = obj["row"], obj["status"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.torn += 1
            return
        if isinstance(row, int) and row > 0 and isinstance(status, str):
            self._record(row, status)
        else:
            self.torn += 1

    def _record(self, row: int, status: str) -> None:
        self.invalid += status == "invalid"
        self._set(row, status in _FINAL)

    @classmethod
    def from_results(cls, path: Path) -> FinishedRows:
        index = cls()
        if not path.exists():
            return index
        with open(path, "rb") as f:
            for line in f:
                line = line.strip()
                if line:
                    index.add_line(line)
        return index


def unfinished(items: Iterable[Item], done: FinishedRows) -> Iterator[Item]:
    """The rows still to do: those with no final outcome yet."""
    for item in items:
        if item.row not in done:
            yield item
