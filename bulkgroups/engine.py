"""The pipeline: rows from a reader, through a bounded queue, to N workers calling a target,
and every outcome to one writer. It knows nothing of HTTP or of files."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum

from bulkgroups.http.auth import AuthRefused, TlsRefused
from bulkgroups.model import Abandoned, Item, Outcome, Result, Row, Status
from bulkgroups.results.stats import Tally
from bulkgroups.targets.base import Target

log = logging.getLogger(__name__)

# Outcomes waiting for the writer; bounded so a file of bad rows cannot outrun the disk.
_OUT_QUEUE = 4096
# The reader hands the loop back this often, so workers and the writer are never starved.
_YIELD_EVERY = 256


class StopReason(StrEnum):
    DONE = "done"
    SIGINT = "interrupted (SIGINT)"
    SIGTERM = "terminated (SIGTERM)"
    AUTH = "credentials refused"
    TLS = "certificate not trusted"
    FAILURE_RATIO = "failure ratio exceeded"
    INTERNAL = "internal error"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Pipeline:
    """One run of rows through a target. `stop()` stops taking rows and lets the ones in
    flight finish; `halt()` abandons those too. Rows never started get no outcome, so a
    resume sends them."""

    def __init__(
        self,
        *,
        target: Target,
        sink: Callable[[list[Outcome]], None],
        workers: int,
        on_progress: Callable[[Tally], None] | None = None,
        abort_failure_ratio: float = 1.0,
        abort_min_rows: int = 100,
    ) -> None:
        self._target = target
        self._sink = sink
        self._workers = workers
        self._on_progress = on_progress
        self._ratio = abort_failure_ratio
        self._min_rows = abort_min_rows
        self._work: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=max(2 * workers, 64))
        self._out: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=_OUT_QUEUE)
        self._feeder: asyncio.Task[None] | None = None
        self._worker_tasks: list[asyncio.Task[None]] = []
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
        self._target.abandon()
        if self._feeder is not None:
            self._feeder.cancel()
        # Rows queued but not started are dropped unanswered: a resume sends them.
        while not self._work.empty():
            self._work.get_nowait()
        for _ in self._worker_tasks:
            self._work.put_nowait(None)

    def halt(self) -> None:
        """Second signal: abandon requests in flight (their rows get no outcome)."""
        for task in self._worker_tasks:
            task.cancel()

    async def run(self, rows: Iterable[Item]) -> Tally:
        writer = asyncio.create_task(self._write())
        self._worker_tasks = [asyncio.create_task(self._work_rows()) for _ in range(self._workers)]
        self._feeder = asyncio.create_task(self._feed(rows))
        try:
            await asyncio.gather(self._feeder, return_exceptions=True)
            await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        finally:
            await self._out.put(None)
            await writer
        return self.tally

    async def _feed(self, rows: Iterable[Item]) -> None:
        try:
            for n, item in enumerate(rows):
                if isinstance(item, Row):
                    await self._work.put(item)
                else:
                    await self._out.put(Outcome.settled(item, finished_at=now_iso()))
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except Exception as exc:  # a reader bug must not leave workers waiting forever
            log.exception("reading the input failed")
            self.stop(StopReason.INTERNAL, f"reading the input failed: {exc}")
            return
        for _ in self._worker_tasks:
            await self._work.put(None)

    async def _work_rows(self) -> None:
        while True:
            row = await self._work.get()
            if row is None or self.stopping:
                return
            start = time.perf_counter()
            try:
                result = await self._target.apply(row)
            except AuthRefused as exc:
                tls = isinstance(exc, TlsRefused)
                self.stop(StopReason.TLS if tls else StopReason.AUTH, str(exc))
                return
            except Abandoned:  # http hook (stop contract): never sent, no outcome
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in one row must not lose the others
                log.exception("row %d: unexpected error", row.row)
                result = Result(Status.FAILED, error=f"internal error: {type(exc).__name__}")
            elapsed_ms = round((time.perf_counter() - start) * 1000.0, 3)
            outcome = Outcome.of(row, result, elapsed_ms=elapsed_ms, finished_at=now_iso())
            await self._out.put(outcome)

    async def _write(self) -> None:
        done = False
        while not done:
            batch: list[Outcome] = []
            item = await self._out.get()
            while True:
                if item is None:
                    done = True
                    break
                batch.append(item)
                if self._out.empty():
                    break
                item = self._out.get_nowait()
            if batch:
                self._sink(batch)
                for outcome in batch:
                    self.tally.add(outcome)
                self._check_failures()
                if self._on_progress is not None:
                    self._on_progress(self.tally)

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
