"""The figures of a results file, read once as a stream.

Counts describe rows, so each row counts once, by its last line (a row that failed and then
went ok on resume is ok). Latency and retries describe the requests that reached the server,
so they count every line, those of earlier runs included: a retry that a resume later made
good still cost the server a request.

Memory grows with the row count by 13 bytes a row (a status byte, the last line's offset and
its error's index), never with the line count or the length of the lines: a million rows
cost about 13 MB.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bulkgroups.model import Op, Status
from bulkgroups.results.file import Record, ResultsReader, max_row_of, record_at
from bulkgroups.results.stats import LatencyHistogram
from bulkgroups.results.undo import InputRow

# Every status `Status` knows, in its order (the run's summary uses the same): never a list
# of our own, so a status added there is counted here.
STATUSES: Final = tuple(s.value for s in Status)
OPS: Final = tuple(op.value for op in Op)
OTHER_OP: Final = "other"  # invalid rows whose op is missing or unknown
OTHER_ERRORS: Final = "(other messages)"

# Distinct error messages kept by name; past this, messages share one "other" bucket so a
# run that failed with a million different messages still reports in bounded memory.
MAX_MESSAGES: Final = 1000
# Example row numbers kept for each error message.
MAX_EXAMPLE_ROWS: Final = 20
# Points of the progress chart; buckets widen (1 s, 2 s, 4 s, ...) to stay under this.
MAX_BUCKETS: Final = 2048

_STATUS_CODE: Final = {s: i + 1 for i, s in enumerate(Status)}
_OP_CODE: Final = {op: i + 1 for i, op in enumerate(OPS)}
_OP_NAMES: Final = (OTHER_OP, *OPS)
# A row's state byte: op code * 8 + status code; 0 = no line for that row.
_STATUS_BITS: Final = 8
_FAILED: Final = _STATUS_CODE[Status.FAILED]
_WITH_ERROR: Final = frozenset({_STATUS_CODE[Status.FAILED], _STATUS_CODE[Status.INVALID]})
assert len(_STATUS_CODE) < _STATUS_BITS, "a status code must fit below the op's bits"


@dataclass(frozen=True, slots=True)
class RunSpan:
    """One run or resume from the metadata: when it started and, if it got there, ended."""

    started: float  # POSIX seconds
    ended: float | None


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    message: str
    count: int
    rows: tuple[int, ...]  # the first few row numbers, ascending


@dataclass(frozen=True, slots=True)
class Latency:
    p50: float | None
    p95: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class Timeline:
    """Lines finished per time bucket: (bucket start in POSIX seconds, lines, failed lines)."""

    bucket_s: float
    points: tuple[tuple[float, int, int], ...]


@dataclass(frozen=True, slots=True)
class Report:
    counts: Mapping[str, int]
    by_op: Mapping[str, Mapping[str, int]]
    rows: int  # distinct rows with a readable line
    lines: int  # readable lines: one per row per run that finished it
    unreadable: int  # torn or damaged lines, skipped
    rows_per_s: float | None
    run_seconds: float | None  # the time the rate is over
    rate_from: str  # "runs" (metadata) or "lines" (first to last finished_at)
    requests: int  # lines that sent at least one request
    latency_ms: Latency  # a row's whole time, waiting included
    # The same time split: the server's answer, and the wait for a turn (pacer, batch); None
    # in files of versions that did not record the wait.
    server_ms: Latency
    waiting_ms: Latency
    retries: int
    errors: tuple[ErrorGroup, ...]
    timeline: Timeline

    def to_json(self) -> dict[str, Any]:
        """The `--json` shape (the public interface: see README)."""
        return {
            "counts": dict(self.counts),
            "by_op": {op: dict(n) for op, n in self.by_op.items()},
            "rows_per_s": self.rows_per_s,
            "latency_ms": {
                "p50": self.latency_ms.p50,
                "p95": self.latency_ms.p95,
                "max": self.latency_ms.max,
            },
            "server_ms": _latency_json(self.server_ms),
            "waiting_ms": _latency_json(self.waiting_ms),
            "retries": self.retries,
            "errors": [
                {"message": e.message, "count": e.count, "rows": list(e.rows)}
                for e in self.errors
            ],
        }


def parse_time(value: object) -> float | None:
    """POSIX seconds of an ISO 8601 time as the writer puts it ("...T10:00:00.000Z")."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # the writer always says UTC; a time without a zone is not ours
    return moment.timestamp()


def runs_of(meta: Mapping[str, Any] | None) -> list[RunSpan]:
    """The runs the metadata records, oldest first; those without a readable start are left
    out."""
    runs = (meta or {}).get("runs")
    spans: list[RunSpan] = []
    if isinstance(runs, list):
        for run in runs:
            if isinstance(run, dict) and (start := parse_time(run.get("started_at"))):
                spans.append(RunSpan(start, parse_time(run.get("ended_at"))))
    spans.sort(key=lambda s: s.started)
    return spans


class _Buckets:
    """Lines per time bucket in at most MAX_BUCKETS buckets, widening as needed."""

    __slots__ = ("_counts", "width")

    def __init__(self) -> None:
        self.width = 1.0
        self._counts: dict[int, list[int]] = {}

    def add(self, t: float, failed: bool) -> None:
        key = math.floor(t / self.width)
        slot = self._counts.get(key)
        if slot is None:
            if len(self._counts) >= MAX_BUCKETS:
                self._widen()
                key = math.floor(t / self.width)
                slot = self._counts.get(key)
            if slot is None:
                slot = self._counts[key] = [0, 0]
        slot[0] += 1
        slot[1] += failed

    def _widen(self) -> None:
        while len(self._counts) >= MAX_BUCKETS:
            self.width *= 2
            merged: dict[int, list[int]] = {}
            for key, (n, failed) in self._counts.items():
                slot = merged.setdefault(key // 2, [0, 0])
                slot[0] += n
                slot[1] += failed
            self._counts = merged

    def timeline(self) -> Timeline:
        points = tuple(
            (key * self.width, n, failed) for key, (n, failed) in sorted(self._counts.items())
        )
        return Timeline(self.width, points)


class ResultsScan:
    """Takes the outcomes of a results file one at a time (`add`) and keeps what the report
    needs."""

    def __init__(self, runs: Sequence[RunSpan] = ()) -> None:
        self._runs = list(runs)
        self._starts = [r.started for r in self._runs]
        self._run_lines = [0] * len(self._runs)
        self._run_last: list[float | None] = [None] * len(self._runs)
        self._state = bytearray()  # per row: op code * 8 + status code of its last line
        self._offset = array("Q")  # per row: where its last line starts
        self._error = array("I")  # per row: 1 + index of its last line's message, or 0
        self._messages: dict[str, int] = {}
        self._latency = LatencyHistogram()
        self._server = LatencyHistogram()
        self._waiting = LatencyHistogram()
        self._buckets = _Buckets()
        self._first_t: float | None = None
        self._last_t: float | None = None
        self.lines = 0
        self.unreadable = 0
        self.requests = 0
        self.retries = 0

    # -- reading ----------------------------------------------------------------------------

    def add(self, record: Record) -> None:
        """Take one outcome (the reader has checked its row and status)."""
        row, status = record.row, _STATUS_CODE[record.status]
        self.lines += 1
        self._grow(row)
        self._state[row] = _OP_CODE.get(record.op, 0) * _STATUS_BITS + status
        self._offset[row] = record.offset
        error = record.error
        self._error[row] = (
            self._message_id(error) if status in _WITH_ERROR and error is not None else 0
        )
        if record.attempts:
            self.requests += 1
            self.retries += record.attempts - 1
            elapsed = record.elapsed_ms
            if elapsed is not None and math.isfinite(elapsed) and elapsed >= 0:
                self._latency.add(elapsed)
                wait = record.wait_ms
                if wait is not None and math.isfinite(wait) and 0 <= wait <= elapsed:
                    self._waiting.add(wait)
                    self._server.add(elapsed - wait)
        t = parse_time(record.finished_at)
        if t is not None:
            self._at(t, failed=status == _FAILED)

    def _grow(self, row: int) -> None:
        have = len(self._state)
        if row < have:
            return
        # Doubling: a file whose rows arrive in order grows log(n) times, not n times.
        more = max(row + 1, 2 * have, 1024) - have
        self._state.extend(bytes(more))
        self._offset.frombytes(bytes(more * self._offset.itemsize))
        self._error.frombytes(bytes(more * self._error.itemsize))

    def _message_id(self, message: str) -> int:
        found = self._messages.get(message)
        if found is not None:
            return found
        if len(self._messages) >= MAX_MESSAGES:
            return MAX_MESSAGES + 1  # the shared "other" bucket
        found = self._messages[message] = len(self._messages) + 1
        return found

    def _at(self, t: float, *, failed: bool) -> None:
        if self._first_t is None or t < self._first_t:
            self._first_t = t
        if self._last_t is None or t > self._last_t:
            self._last_t = t
        self._buckets.add(t, failed)
        if self._runs:
            i = max(0, bisect_right(self._starts, t) - 1)
            self._run_lines[i] += 1
            last = self._run_last[i]
            if last is None or t > last:
                self._run_last[i] = t

    # -- figures ----------------------------------------------------------------------------

    def report(self) -> Report:
        state = self._state
        counts = {name: 0 for name in STATUSES}
        by_op: dict[str, dict[str, int]] = {}
        for op_code, op_name in enumerate(_OP_NAMES):
            per = {status.value: state.count(op_code * _STATUS_BITS + code)
                   for status, code in _STATUS_CODE.items()}
            if any(per.values()):
                by_op[op_name] = per
                for name, n in per.items():
                    counts[name] += n
        rate, seconds, source = self._rate()
        hist = self._latency
        return Report(
            counts=counts,
            by_op=by_op,
            rows=sum(counts.values()),
            lines=self.lines,
            unreadable=self.unreadable,
            rows_per_s=rate,
            run_seconds=seconds,
            rate_from=source,
            requests=self.requests,
            latency_ms=_latency(hist),
            server_ms=_latency(self._server),
            waiting_ms=_latency(self._waiting),
            retries=self.retries,
            errors=self._errors(),
            timeline=self._buckets.timeline(),
        )

    def _rate(self) -> tuple[float | None, float | None, str]:
        """Rows a second while runs were going: lines over the summed run durations, so the
        hours between a run and its resume do not count. A run killed before it wrote its end
        ends at its last line."""
        if self._runs:
            seconds = 0.0
            lines = 0
            for run, n, last in zip(self._runs, self._run_lines, self._run_last, strict=True):
                end = run.ended if run.ended is not None else last
                if end is not None:
                    seconds += max(0.0, end - run.started)
                    lines += n
            if seconds > 0:
                return round(lines / seconds, 3), round(seconds, 3), "runs"
        if self._first_t is not None and self._last_t is not None:
            seconds = self._last_t - self._first_t
            if seconds > 0:
                return round(self.lines / seconds, 3), round(seconds, 3), "lines"
        return None, None, "none"

    def _errors(self) -> tuple[ErrorGroup, ...]:
        names = {i: m for m, i in self._messages.items()}
        names[MAX_MESSAGES + 1] = OTHER_ERRORS
        counts: dict[int, int] = {}
        examples: dict[int, list[int]] = {}
        # Row order, so the examples are the first rows with that message.
        for row, message in enumerate(self._error):
            if message and self._state[row] & (_STATUS_BITS - 1) in _WITH_ERROR:
                counts[message] = counts.get(message, 0) + 1
                rows = examples.setdefault(message, [])
                if len(rows) < MAX_EXAMPLE_ROWS:
                    rows.append(row)
        groups = [ErrorGroup(names[i], n, tuple(examples[i])) for i, n in counts.items()]
        groups.sort(key=lambda g: (g.message == OTHER_ERRORS, -g.count, g.message))
        return tuple(groups)

    def failed_offsets(self) -> Iterator[int]:
        """Where the last line of each row that ended failed starts, in row order."""
        state, offsets = self._state, self._offset
        mask = _STATUS_BITS - 1
        for row in range(len(state)):
            if state[row] and state[row] & mask == _FAILED:
                yield offsets[row]


def _latency(hist: LatencyHistogram) -> Latency:
    return Latency(p50=_round(hist.percentile(50)), p95=_round(hist.percentile(95)),
                   max=_round(hist.max_ms) if hist.count else None)


def _latency_json(lat: Latency) -> dict[str, float | None]:
    return {"p50": lat.p50, "p95": lat.p95, "max": lat.max}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def scan_results(path: Path, meta: Mapping[str, Any] | None) -> ResultsScan:
    """Read the whole results file once. Raises ResultsFileError when it cannot be read or
    is not a results file: an empty file counts as one only with its metadata beside it (a
    run that was stopped before its first outcome)."""
    scan = ResultsScan(runs_of(meta))
    reader = ResultsReader(path, max_row=max_row_of(meta), require_lines=meta is None)
    add = scan.add
    for record in reader:
        add(record)
    scan.unreadable = reader.skipped
    return scan


def failed_rows(path: Path, scan: ResultsScan) -> Iterator[InputRow]:
    """The rows whose last outcome is `failed`, as input rows to run again, in row order."""
    with open(path, "rb") as f:
        for offset in scan.failed_offsets():
            record = record_at(f, offset)
            row = InputRow.from_outcome(record) if record is not None else None
            if row is not None:
                yield row
