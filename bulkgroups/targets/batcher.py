"""Many rows, one request: members bound for the same group and verb share one list request
of up to `size` members.

A batch closes when its request can go, not on a timer. Rows join their key's open batch in a
`BatchQueue`; one dispatcher task waits for a request slot (`gate.ready()`: the pacer's rate
turn and a free concurrency slot) and only then takes the batch the policy chooses (the
fullest; any batch whose first row waited `max_wait_s` before it). So under a rate limit a
batch keeps taking rows for the seconds it waits for its slot, whatever the input's order;
when the rate is not the limit, a batch goes in the loop turn after its first row, as soon as
a slot is free."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Protocol

from bulkgroups import clock
from bulkgroups.http.transport import Reply
from bulkgroups.model import Abandoned
from bulkgroups.targets.batchpolicy import Batch, BatchQueue

Send = Callable[[str, str, list[str]], Awaitable[Reply]]

# Answers that may concern only some of the members: halving the batch finds the rows at fault
# and lets the others through. A 404 (the group) or a 5xx after retries concerns them all.
_SPLIT_ON = frozenset({400, 409, 413, 422})

# The longest a row waits behind fuller batches once a slot is free (see batchpolicy).
MAX_WAIT_S = 5.0


class Gate(Protocol):
    async def ready(self) -> None:
        """Returns once a request entering now would start at once; takes nothing."""
        ...


# One row waiting: its member, the future its row awaits, its clock, when it joined.
_Item = tuple[str, "asyncio.Future[Reply]", "clock.RowClock | None", float]
_Key = tuple[str, str]


class Batcher:
    __slots__ = ("_abandoned", "_dispatcher", "_freed", "_gate", "_max_in_flight", "_queue",
                 "_running", "_send", "_size")

    def __init__(
        self,
        send: Send,
        *,
        size: int,
        gate: Gate | None = None,
        max_in_flight: int = 10,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self._send = send
        self._size = size
        self._gate = gate
        # Our own cap on batch requests in flight (the pacer's concurrency): a batch that could
        # not start at once would be closed while it waits, and take no more rows.
        self._max_in_flight = max_in_flight
        self._queue: BatchQueue[_Key, _Item] = BatchQueue(size=size, max_wait_s=max_wait_s)
        self._running: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._freed: asyncio.Event | None = None
        self._abandoned = False

    @property
    def waiting(self) -> int:
        """Rows waiting for a request."""
        return self._queue.rows

    async def submit(self, method: str, group: str, member: str) -> Reply:
        """The answer to the request that carried `member`; every row of a batch gets it.
        Raises Abandoned once the run is stopping and the request was not sent."""
        if self._abandoned:
            raise Abandoned()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._queue.add((method, group), (member, future, clock.current(), loop.time()),
                        loop.time())
        if self._dispatcher is None:
            # A clean context: the dispatcher and the requests it starts belong to no row.
            self._dispatcher = loop.create_task(self._dispatch(), context=contextvars.Context())
        return await future

    def abandon(self) -> None:
        """The run is stopping: rows still waiting for a request get Abandoned (no outcome,
        a resume sends them); requests already sent finish."""
        self._abandoned = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            self._dispatcher = None
        for batch in self._queue.drain():
            for _, future, _, _ in batch.items:
                if not future.done():
                    future.set_exception(Abandoned())

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue.rows and not self._abandoned:
                if len(self._running) >= self._max_in_flight:
                    self._freed = self._freed or asyncio.Event()
                    self._freed.clear()
                    await self._freed.wait()
                    continue
                if self._gate is not None:
                    try:
                        await self._gate.ready()  # meanwhile, batches keep taking rows
                    except Abandoned:
                        self.abandon()  # the transport stopped first: answer the waiting rows
                        return
                batch = self._queue.pop_next(loop.time())
                if batch is None:
                    break
                self._start(batch, loop)
                # The request's first step passes the pacer (a free slot and a due turn are
                # taken without a suspension), so the next ready() sees that slot taken.
                await asyncio.sleep(0)
        finally:
            if self._dispatcher is asyncio.current_task():
                self._dispatcher = None

    def _start(self, batch: Batch[_Key, _Item], loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        live: list[_Item] = []
        for item in batch.items:
            if item[1].done():  # a halted row no longer waits
                continue
            if item[2] is not None:
                item[2].wait_s += now - item[3]  # waited for the batch to get its slot
            live.append(item)
        if not live:
            return
        task = loop.create_task(self._run(batch.key, live), context=contextvars.Context())
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._freed is not None:
            self._freed.set()

    async def _run(self, key: _Key, items: list[_Item]) -> None:
        live = [item for item in items if not item[1].done()]
        if not live:
            return
        request_clock = clock.start_row()  # the pacer adds what this request waited
        try:
            reply = await self._send(key[0], key[1], [m for m, _, _, _ in live])
        except asyncio.CancelledError:
            for _, future, _, _ in live:
                future.cancel()
            raise
        except Exception as exc:  # AuthRefused, Abandoned, a bad id: every row hears it
            for _, future, _, _ in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, _, row_clock, _ in live:
            if row_clock is not None:
                row_clock.wait_s += request_clock.wait_s
        if reply.status in _SPLIT_ON and len(live) > 1:
            half = len(live) // 2
            await asyncio.gather(self._run(key, live[:half]), self._run(key, live[half:]))
            return
        for _, future, _, _ in live:
            if not future.done():
                future.set_result(reply)
