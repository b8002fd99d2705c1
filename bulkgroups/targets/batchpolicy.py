"""Which waiting batch gets the next request slot: pure policy, no I/O and no clock of its own,
so it is tested without a server (the batcher is the loop around it, the way aiometer keeps
its meter apart from its loop).

A slot is scarce under a rate limit, so the request that takes it should carry as many rows
as possible: the fullest batch goes first. Fullest-first alone could leave a small batch (a
group with few rows) waiting behind a stream of full ones, so a batch whose first row has
waited `max_wait_s` goes before any other, oldest first.

Every operation is O(1) (amortised): batches are kept in the order they opened (for the age
check) and in buckets by row count (for the fullest), so a run over 10,000 groups does not
scan them all for each request."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Batch(Generic[K, T]):
    __slots__ = ("id", "items", "key", "since")

    def __init__(self, id: int, key: K, since: float) -> None:
        self.id = id
        self.key = key
        self.since = since  # when its first row joined, on the caller's clock
        self.items: list[T] = []


class BatchQueue(Generic[K, T]):
    """Rows waiting for a request, one open batch per key (a group and verb); a batch that
    reaches `size` rows closes and the next row of its key opens another."""

    __slots__ = ("_buckets", "_full", "_next_id", "_open", "_order", "_top", "max_wait_s",
                 "rows", "size")

    def __init__(self, *, size: int, max_wait_s: float) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.max_wait_s = max_wait_s
        self.rows = 0  # rows waiting, all batches together
        self._next_id = 0
        self._open: dict[K, Batch[K, T]] = {}
        self._order: dict[int, Batch[K, T]] = {}  # every waiting batch, oldest first
        self._full: deque[Batch[K, T]] = deque()
        # Open batches by row count (index 1..size-1), each bucket oldest first.
        self._buckets: list[dict[int, Batch[K, T]]] = [{} for _ in range(size)]
        self._top = 0

    def __len__(self) -> int:
        """Batches waiting."""
        return len(self._order)

    def add(self, key: K, item: T, now: float) -> None:
        batch = self._open.get(key)
        if batch is None:
            batch = Batch(self._next_id, key, now)
            self._next_id += 1
            self._order[batch.id] = batch
            self._open[key] = batch
        else:
            del self._buckets[len(batch.items)][batch.id]
        batch.items.append(item)
        self.rows += 1
        n = len(batch.items)
        if n >= self.size:
            del self._open[key]
            self._full.append(batch)
        else:
            self._buckets[n][batch.id] = batch
            self._top = max(self._top, n)

    def pop_next(self, now: float) -> Batch[K, T] | None:
        """The batch the next slot goes to, taken out of the queue; None when none waits."""
        first = next(iter(self._order.values()), None)
        if first is None:
            return None
        if now - first.since >= self.max_wait_s:
            batch = first  # its rows have waited long enough: it goes, full or not
        elif self._full:
            batch = self._full[0]  # the oldest full batch: nothing is fuller
        else:
            while not self._buckets[self._top]:
                self._top -= 1
            batch = next(iter(self._buckets[self._top].values()))
        self._take(batch)
        return batch

    def drain(self) -> list[Batch[K, T]]:
        """Every waiting batch, taken out (the run is stopping)."""
        batches = list(self._order.values())
        for batch in batches:
            self._take(batch)
        return batches

    def _take(self, batch: Batch[K, T]) -> None:
        del self._order[batch.id]
        self.rows -= len(batch.items)
        if len(batch.items) >= self.size:
            self._full.remove(batch)  # the first, or near it: full batches go oldest first
        else:
            del self._buckets[len(batch.items)][batch.id]
            if self._open.get(batch.key) is batch:
                del self._open[batch.key]
