"""Running tallies of a run in constant memory: counts by status and a latency histogram."""

from __future__ import annotations

import math
from collections import Counter

from bulkgroups.model import Outcome, Status

# Latency buckets grow by 2 % each, so any percentile is known to within 2 % whatever the
# number of rows, in a few hundred counters.
_GROWTH = math.log(1.02)


class LatencyHistogram:
    __slots__ = ("_buckets", "count", "max_ms")

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        self._buckets[int(math.log(ms + 1.0) / _GROWTH)] += 1
        self.count += 1
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, p: float) -> float | None:
        if not self.count:
            return None
        rank = p / 100.0 * self.count
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return min(self.max_ms, math.exp((bucket + 0.5) * _GROWTH) - 1.0)
        return self.max_ms


class Tally:
    """`latency`: a row's whole time; split into `waiting` (for its batch's slot, the
    pacer's turn, a pause) and `server` (the requests out: the answers, their retries), so
    a fast server behind a rate limit does not read as a slow one."""

    __slots__ = ("by_status", "latency", "retries", "server", "waiting")

    def __init__(self) -> None:
        self.by_status: Counter[Status] = Counter()
        self.latency = LatencyHistogram()
        self.waiting = LatencyHistogram()
        self.server = LatencyHistogram()
        self.retries = 0

    def add(self, outcome: Outcome) -> None:
        self.by_status[outcome.status] += 1
        if outcome.attempts:
            self.latency.add(outcome.elapsed_ms)
            wait = min(max(outcome.wait_ms, 0.0), outcome.elapsed_ms)
            self.waiting.add(wait)
            self.server.add(outcome.elapsed_ms - wait)
            self.retries += max(0, outcome.attempts - 1)

    @property
    def finished(self) -> int:
        return sum(self.by_status.values())

    def counts(self) -> dict[str, int]:
        return {s.value: self.by_status.get(s, 0) for s in Status}
