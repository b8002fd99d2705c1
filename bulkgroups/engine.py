"""The pipeline: rows from a reader, each in its own task while in flight (at most `workers`
at once), calling a target, and every outcome to one writer. It knows nothing of HTTP or of
files.

Rows in flight are not requests in flight: with batching a run holds many more rows (waiting
for their batch) than it has requests out; the pacer caps the requests. A row in flight costs
its task (~1.6 KB), so `workers` is the run's memory budget for rows."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum

from bulkgroups import clock
from bulkgroups.http.auth import AuthRefused, TlsRefused
from bulkgroups.identity import norm_id
from bulkgroups.model import Abandoned, Item, Outcome, Result, Row, Status
from bulkgroups.results.stats import Tally
from bulkgroups.targets.base import Target

log = logging.getLogger(__name__)

# Outcomes waiting for the writer before the reader waits; so a file of bad rows cannot
# outrun the disk. Rows in flight never wait on it: nothing a row does can block a stop.
_OUT_QUEUE = 4096
# The reader hands the loop back this often, so rows and the writer are never starved.
_YIELD_EVERY = 256


class StopReason(StrEnum):
    DONE = "done"
    SIGINT = "interrupted (SIGINT)"
    SIGTERM = "terminated (SIGTERM)"
    AUTH = "credentials refused"
    TLS = "certificate not trusted"
    FAILURE_RATIO = "failure ratio exceeded"
    RESULTS = "cannot write the results"
    INTERNAL = "internal error"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unwritable(exc: BaseException) -> str:
    """What went wrong writing, in a few words (the message of the stop)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            if seen.errno in (errno.ENOSPC, errno.EDQUOT):
                return "disk full"
            return seen.strerror or errno.errorcode.get(seen.errno, "error")
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


class Pipeline:
    """One run of rows through a target. `stop()` stops taking rows and lets the ones in
    flight finish (at most `stop_grace_s`, then it halts); `halt()` abandons those too. Rows
    never started, or abandoned, get no outcome, so a resume sends them."""

    def __init__(
        self,
        *,
        target: Target,
        sink: Callable[[list[Outcome]], None],
        workers: int,
        on_progress: Callable[[Tally], None] | None = None,
        abort_failure_ratio: float = 1.0,
        abort_min_rows: int = 100,
        stop_grace_s: float | None = None,
        make_room: Callable[[], bool] | None = None,
    ) -> None:
        self._target = target
        self._sink = sink
        self._workers = workers  # rows in flight at most
        self._on_progress = on_progress
        self._ratio = abort_failure_ratio
        self._min_rows = abort_min_rows
        self._grace_s = stop_grace_s
        # Called once when a write fails: True if it made room for the outcomes of the rows
        # still in flight (the run stops either way).
        self._make_room = make_room
        self._outbox: deque[Outcome] = deque()
        self._out_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._closed = False
        self._broken = False  # the sink failed: nothing more is written
        self._feeder: asyncio.Task[None] | None = None
        self._live: set[asyncio.Task[None]] = set()
        # The last row in flight for each membership (group, member): a later row about the
        # same membership waits for it, so such rows take effect in input order (a removal,
        # then a move back into the same group, must not be decided before the removal is
        # made). Rows of one member in other groups still share batches.
        self._last_of: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._room = asyncio.Semaphore(workers)
        self._halt_timer: asyncio.TimerHandle | None = None
        self.tally = Tally()
        self.reason = StopReason.DONE
        self.detail = ""

    @property
    def stopping(self) -> bool:
        return self.reason is not StopReason.DONE

    def stop(self, reason: StopReason, detail: str = "") -> None:
        if self.stopping:
            return
        self.reason, self.detail = reason, detail
        # Nothing more is sent: rows waiting for a request get Abandoned (no outcome).
        self._target.abandon()
        if self._feeder is not None:
            self._feeder.cancel()
        self._drained.set()
        if self._grace_s is not None and self._live:
            # A row whose request is out ends within its timeout; one that would wait out a
            # pause or a retry is not waited for beyond that.
            loop = asyncio.get_running_loop()
            self._halt_timer = loop.call_later(self._grace_s, self.halt)

    def halt(self) -> None:
        """Second signal (or the grace ran out): abandon rows in flight (no outcome)."""
        for task in list(self._live):
            task.cancel()

    async def run(self, rows: Iterable[Item]) -> Tally:
        writer = asyncio.create_task(self._write())
        self._feeder = asyncio.create_task(self._feed(rows))
        try:
            await asyncio.gather(self._feeder, return_exceptions=True)
            while self._live:
                await asyncio.wait(set(self._live))
        finally:
            if self._halt_timer is not None:
                self._halt_timer.cancel()
            self._closed = True
            self._out_ready.set()
            await writer
        return self.tally

    async def _feed(self, rows: Iterable[Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            for n, item in enumerate(rows):
                if self.stopping:
                    return
                if isinstance(item, Row):
                    await self._room.acquire()
                    if self.stopping:
                        self._room.release()
                        return
                    keys = _memberships(item)
                    before = [b for k in keys if (b := self._last_of.get(k)) is not None]
                    task = loop.create_task(self._one(item, after=before))
                    self._live.add(task)
                    task.add_done_callback(self._row_done)
                    for key in keys:
                        self._last_of[key] = task
                        task.add_done_callback(functools.partial(self._forget, key))
                else:
                    self._emit(Outcome.settled(item, finished_at=now_iso()))
                    if len(self._outbox) >= _OUT_QUEUE and not self.stopping:
                        self._drained.clear()
                        await self._drained.wait()
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except Exception as exc:  # a reader bug must not leave rows waiting forever
            log.exception("reading the input failed")
            self.stop(StopReason.INTERNAL, f"reading the input failed: {exc}")

    def _forget(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._last_of.get(key) is task:
            del self._last_of[key]

    def _row_done(self, task: asyncio.Task[None]) -> None:
        self._live.discard(task)
        self._room.release()

    async def _one(self, row: Row, *, after: list[asyncio.Task[None]] | None = None) -> None:
        waiting = [a for a in after or () if not a.done()]
        if waiting:
            await asyncio.wait(waiting)  # earlier rows about the same membership: _last_of
        row_clock = clock.start_row()  # this task's own: the batcher and pacer add waits
        start = time.perf_counter()
        try:
            result = await self._target.apply(row)
        except Abandoned:
            return  # never sent: no outcome, a resume sends it
        except AuthRefused as exc:
            tls = isinstance(exc, TlsRefused)
            self.stop(StopReason.TLS if tls else StopReason.AUTH, str(exc))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one row must not lose the others
            log.exception("row %d: unexpected error", row.row)
            result = Result(Status.FAILED, error=f"internal error: {type(exc).__name__}")
        elapsed_ms = round((time.perf_counter() - start) * 1000.0, 3)
        wait_ms = min(elapsed_ms, round(row_clock.wait_s * 1000.0, 3))
        self._emit(Outcome.of(row, result, elapsed_ms=elapsed_ms, finished_at=now_iso(),
                              wait_ms=wait_ms))

    def _emit(self, outcome: Outcome) -> None:
        if self._broken:
            return  # cannot be written: the row has no outcome, a resume sends it again
        self._outbox.append(outcome)
        self._out_ready.set()

    async def _write(self) -> None:
        while True:
            await self._out_ready.wait()
            self._out_ready.clear()
            batch = list(self._outbox)
            self._outbox.clear()
            self._drained.set()
            if batch and not self._broken:
                self._write_batch(batch)
            if self._closed and not self._outbox:
                return

    def _write_batch(self, batch: list[Outcome]) -> None:
        try:
            self._sink(batch)
        except Exception as exc:  # ENOSPC, EIO, a read-only remount: the run cannot go on
            # Stop first: nothing more is sent, so what still comes back is only the rows
            # whose requests are out.
            self.stop(StopReason.RESULTS, _unwritable(exc))
            room, self._make_room = self._make_room, None
            if room is None or not room() or not self._retry(batch):
                self._broken = True
                self._outbox.clear()
                return
        for outcome in batch:
            self.tally.add(outcome)
        self._check_failures()
        if self._on_progress is not None:
            self._on_progress(self.tally)

    def _retry(self, batch: list[Outcome]) -> bool:
        try:
            self._sink(batch)
        except Exception:
            return False
        return True

    def _check_failures(self) -> None:
        if self._ratio >= 1.0 or self.stopping:
            return
        finished = self.tally.finished
        failed = self.tally.by_status[Status.FAILED]
        if finished >= self._min_rows and failed / finished > self._ratio:
            self.stop(
                StopReason.FAILURE_RATIO,
                f"{failed} of {finished} finished rows failed "
                f"({failed / finished:.0%} > {self._ratio:.0%})",
            )


def _memberships(row: Row) -> tuple[tuple[str, str], ...]:
    """The (group, member) pairs a row changes, by identity; a move_all names no member."""
    if not row.member:
        return ()
    member = norm_id(row.member)
    if row.to_group:
        return ((norm_id(row.group), member), (norm_id(row.to_group), member))
    return ((norm_id(row.group), member),)
