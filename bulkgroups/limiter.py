"""Pacing for every request of a run: a steady rate, a cap on requests in flight, and a
pause that every worker honours when the server says to wait."""

from __future__ import annotations

import asyncio
from types import TracebackType

from aiolimiter import AsyncLimiter


class Pacer:
    """`async with pacer:` around each request.

    aiolimiter's bucket lets `max_rate` requests through at once when it is full, which would
    put `rate` requests in the first instant and up to 2*rate in the first second;
    `AsyncLimiter(1, 1/rate)` admits one request every 1/rate seconds instead, so no
    one-second window holds more than `rate`.
    """

    __slots__ = ("_limiter", "_loop", "_pause_until", "_rate", "_slots")

    def __init__(self, *, rate: float, concurrency: int) -> None:
        if rate <= 0 or concurrency < 1:
            raise ValueError("rate must be > 0 and concurrency >= 1")
        self._rate = rate
        self._limiter = AsyncLimiter(1, 1.0 / rate)
        self._slots = asyncio.Semaphore(concurrency)
        self._pause_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def rate(self) -> float:
        return self._rate

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def pause_for(self, seconds: float) -> None:
        """No request starts until `seconds` from now (a later pause extends, never shortens)."""
        self._pause_until = max(self._pause_until, self._now() + seconds)

    @property
    def paused_s(self) -> float:
        """How long the current pause still lasts."""
        return max(0.0, self._pause_until - self._now())

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        try:
            while True:
                wait = self._pause_until - self._now()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._limiter.acquire()
                # A pause may have begun while this request queued for its turn.
                if self._pause_until <= self._now():
                    return
        except BaseException:
            self._slots.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()
