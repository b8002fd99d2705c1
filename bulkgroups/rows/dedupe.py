"""Duplicate rows in one input are done once: a later copy of a row becomes a `noop` that
names the row it repeats, and sends nothing.

A row is its op and the `norm_id` form of its ids, so "CN=Admins, OU=IT" and
"cn=admins,ou=it" are one group, and a braced GUID is the same as a bare one. Invalid rows
pass through untouched: each is its own mistake to report.

The filter streams, and what it remembers is sized for a million rows: a 96-bit hash of each
distinct row and the number of the row that first had it, 16 bytes a slot of an
open-addressing table (typed arrays in private anonymous maps, not Python objects) kept at
most 3/4 full. A million distinct rows take a 32 MiB table, and no more while it doubles (the
old table is given back as it is moved), where a set of their keys as strings would take 170 MB.

The hash is two of Python's string hashes (SipHash, keyed at random for each process) of the
row's key, 64 and 32 bits of them. Two different rows whose hashes agree in all 96 bits would
make the second a "duplicate" that is never sent: for a million rows the odds are about 1 in
10^17, and with the key unknown no input can be written to collide. (Setting PYTHONHASHSEED
fixes the key; the odds stay the same, only the key is then known.)
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable, Iterator
from typing import Final, Literal

from bulkgroups.identity import norm_id
from bulkgroups.model import InvalidRow, Op, Row, SkippedRow

# Row numbers are kept in 32 bits; a row past this is remembered as this (an input of four
# billion rows is hypothetical, and its copies are still found, only named less exactly).
MAX_ROW: Final = 0xFFFF_FFFF
_M64: Final = 0xFFFF_FFFF_FFFF_FFFF
_M32: Final = 0xFFFF_FFFF
_OPS: Final = {op: op.value for op in Op}  # an enum's str() is slow on a per-row path


# A table's arrays live in anonymous memory maps: their pages cost nothing until written, so a
# doubling table is not held whole twice over (see `_grow`).
_PAGE: Final = mmap.PAGESIZE
_RELEASE_EVERY: Final = 1 << 16  # slots moved between releases of the old table's tail
# Private, not the default shared mapping: a released page of shared anonymous memory leaves
# this process's RSS but stays allocated (as shmem) until the map is closed.
_PRIVATE: Final[dict[str, int]] = (
    {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS} if hasattr(mmap, "MAP_ANONYMOUS") else {}
)


class _Column:
    """One array of the table (`Q` or `I` items) in its own anonymous map."""

    __slots__ = ("_map", "_view", "items")

    def __init__(self, code: Literal["Q", "I"], size: int) -> None:
        nbytes = size * struct.calcsize(code)
        self._map = mmap.mmap(-1, max(_PAGE, nbytes), **_PRIVATE)
        self._view = memoryview(self._map)
        self.items: memoryview[int] = self._view[:nbytes].cast(code)

    def release_from(self, index: int) -> None:
        """Give the pages holding items from `index` on back to the system (they read as
        zeros after; only for a table that is being emptied from the top)."""
        start = -(-index * self.items.itemsize // _PAGE) * _PAGE
        if start < len(self._map) and hasattr(self._map, "madvise"):
            self._map.madvise(mmap.MADV_DONTNEED, start, len(self._map) - start)

    def close(self) -> None:
        self.items.release()
        self._view.release()
        self._map.close()


class FirstSeen:
    """An open-addressing table of 96-bit hashes (`hi` 64 bits, `lo` 32), each with the first
    row that had it. Linear probing; a slot whose row is 0 is free (rows start at 1)."""

    __slots__ = ("_cols", "_count", "_hi", "_limit", "_lo", "_mask", "_rows")

    def __init__(self, capacity: int = 1024) -> None:
        self._count = 0
        self._alloc(1 << max(3, (capacity - 1).bit_length()))

    def _alloc(self, size: int) -> None:
        self._cols = (_Column("Q", size), _Column("I", size), _Column("I", size))
        self._hi: memoryview[int] = self._cols[0].items
        self._lo: memoryview[int] = self._cols[1].items
        self._rows: memoryview[int] = self._cols[2].items
        self._mask = size - 1
        self._limit = size * 3 // 4

    def __len__(self) -> int:
        return self._count

    @property
    def slots(self) -> int:
        return self._mask + 1

    @property
    def nbytes(self) -> int:
        """Bytes the table's arrays hold."""
        return sum(a.itemsize * len(a) for a in (self._hi, self._lo, self._rows))

    def first(self, hi: int, lo: int, row: int) -> int | None:
        """The row recorded for the hash (`hi`, `lo`); None after recording `row` for it."""
        rows, his, mask = self._rows, self._hi, self._mask
        slot = hi & mask
        seen = rows[slot]
        while seen:
            if his[slot] == hi and self._lo[slot] == lo:
                return seen
            slot = (slot + 1) & mask
            seen = rows[slot]
        his[slot] = hi
        self._lo[slot] = lo
        rows[slot] = row if row < MAX_ROW else MAX_ROW
        self._count += 1
        if self._count > self._limit:
            self._grow()
        return None

    def _grow(self) -> None:
        """Doubles the table. The old slots are moved from the top down: an entry's new home
        is its old one or that plus the old size, so the new table's pages are written in two
        sweeps that follow the move, while the old table's pages above it are given back. At
        most about the new table is resident (2 sizes), not the new and the old (3)."""
        old_cols = self._cols
        old_hi, old_lo, old_rows = self._hi, self._lo, self._rows
        old_size = self._mask + 1
        self._alloc(2 * old_size)
        his, los, rows, mask = self._hi, self._lo, self._rows, self._mask
        for i in range(old_size - 1, -1, -1):
            row = old_rows[i]
            if row:
                hi = old_hi[i]
                slot = hi & mask
                while rows[slot]:
                    slot = (slot + 1) & mask
                his[slot] = hi
                los[slot] = old_lo[i]
                rows[slot] = row
            if i % _RELEASE_EVERY == 0:
                for col in old_cols:
                    col.release_from(i)
        for col in old_cols:
            col.close()


def dedupe(items: Iterable[Row | InvalidRow]) -> Iterator[Row | InvalidRow | SkippedRow]:
    """`items` with every valid row that repeats an earlier one (same op, same ids as
    `norm_id` sees them) turned into a SkippedRow `noop` "duplicate of row N"; the first of
    each is yielded as it is, and so is every invalid row."""
    first = FirstSeen().first
    ops = _OPS
    for item in items:
        if type(item) is Row:
            g = norm_id(item.group)
            m = norm_id(item.member) if item.member else ""
            t = norm_id(item.to_group) if item.to_group else ""
            # Lengths first: a DN's hex escapes can put any character into its norm_id form,
            # so no separator alone keeps two different rows from spelling the same key.
            key = f"{ops[item.op]}:{len(g)}:{len(m)}:{g}{m}{t}"
            seen = first(hash(key) & _M64, hash(key + "#") & _M32, item.row)
            if seen is not None:
                where = f"row {seen}" if seen < MAX_ROW else "an earlier row"
                yield SkippedRow(
                    row=item.row,
                    line=item.line,
                    op=item.op,
                    group=item.group,
                    member=item.member,
                    to_group=item.to_group,
                    reason=f"duplicate of {where}",
                )
                continue
        yield item
