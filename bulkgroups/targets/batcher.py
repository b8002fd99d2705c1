"""Many rows, one request: members bound for the same group and verb that arrive close together
share one list request of up to `size` members, sent when full or after `linger_s`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bulkgroups.http.transport import Reply

Send = Callable[[str, str, list[str]], Awaitable[Reply]]

# Answers that may concern only some of the members: halving the batch finds the rows at fault
# and lets the others through. A 404 (the group) or a 5xx after retries concerns them all.
_SPLIT_ON = frozenset({400, 409, 413, 422})


class _Batch:
    __slots__ = ("items", "timer")

    def __init__(self) -> None:
        self.items: list[tuple[str, asyncio.Future[Reply]]] = []
        self.timer: asyncio.TimerHandle | None = None


class Batcher:
    __slots__ = ("_linger_s", "_pending", "_running", "_send", "_size")

    def __init__(self, send: Send, *, size: int, linger_s: float = 0.02) -> None:
        self._send = send
        self._size = size
        self._linger_s = linger_s
        self._pending: dict[tuple[str, str], _Batch] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, method: str, group: str, member: str) -> Reply:
        """The answer to the request that carried `member`; every row of a batch gets it."""
        key = (method, group)
        loop = asyncio.get_running_loop()
        batch = self._pending.get(key)
        if batch is None:
            batch = self._pending[key] = _Batch()
            batch.timer = loop.call_later(self._linger_s, self._flush, key)
        future: asyncio.Future[Reply] = loop.create_future()
        batch.items.append((member, future))
        if len(batch.items) >= self._size:
            self._flush(key)
        return await future

    def _flush(self, key: tuple[str, str]) -> None:
        batch = self._pending.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.create_task(self._run(key, batch.items))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(
        self, key: tuple[str, str], items: list[tuple[str, asyncio.Future[Reply]]]
    ) -> None:
        live = [(m, f) for m, f in items if not f.done()]  # a halted row no longer waits
        if not live:
            return
        try:
            reply = await self._send(key[0], key[1], [m for m, _ in live])
        except asyncio.CancelledError:
            for _, future in live:
                future.cancel()
            raise
        except Exception as exc:  # AuthRefused, or a bad id: every row of the batch hears it
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        if reply.status in _SPLIT_ON and len(live) > 1:
            half = len(live) // 2
            await asyncio.gather(self._run(key, live[:half]), self._run(key, live[half:]))
            return
        for _, future in live:
            if not future.done():
                future.set_result(reply)
