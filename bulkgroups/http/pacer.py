"""Pacing for every request of a run: a steady rate that adapts to the server, a cap on
requests in flight, and a pause that every worker honours when the server says to wait."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from types import TracebackType

from aiolimiter import AsyncLimiter

from bulkgroups import clock
from bulkgroups.http.quota import Quota

# After a 429 the rate halves (never below this share of the job's rate); each answered
# request then wins back this share, so full speed returns after about 50 good answers.
_FLOOR_SHARE = 0.05
_CLIMB_SHARE = 0.02
# Spend a quota at this share of what it allows, so jitter does not run it dry.
_QUOTA_MARGIN = 0.9
# Pacer.ready() waits this share of a turn beyond the bucket's emptying, and lets no more
# than `rate` requests start in any 1 s + this margin: a request's start at the server lags
# ours by its connection set-up (30-70 ms for a new connection on a loaded loopback), which
# would otherwise put rate + 1 starts in one of the server's seconds.
_READY_MARGIN = 0.02
_WINDOW_MARGIN_S = 0.1
# A quota states what the server allows, so it may pull the rate below the AIMD floor.
_QUOTA_FLOOR_RATE = 0.2


class Pacer:
    """`async with pacer:` around each request.

    aiolimiter's bucket lets `max_rate` requests through at once when it is full, which would
    put `rate` requests in the first instant and up to 2*rate in the first second;
    `AsyncLimiter(1, 1/rate)` admits one request every 1/rate seconds instead, so no
    one-second window holds more than `rate`. The job's rate is a ceiling the pacer never
    passes; below it, the rate follows the server (additive increase, multiplicative decrease).
    """

    __slots__ = ("_current", "_limiter", "_loop", "_max", "_pause_until", "_slots", "_starts")

    def __init__(self, *, rate: float, concurrency: int) -> None:
        if rate <= 0 or concurrency < 1:
            raise ValueError("rate must be > 0 and concurrency >= 1")
        self._max = rate
        self._current = rate
        self._limiter = AsyncLimiter(1, 1.0 / rate)
        self._slots = asyncio.Semaphore(concurrency)
        self._pause_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        # When the last `rate` requests were let through: ready() keeps any one-second
        # window to `rate` starts even as the server sees them (see _WINDOW_MARGIN_S).
        self._starts: deque[float] = deque(maxlen=max(1, math.ceil(rate)))

    @property
    def rate(self) -> float:
        """The rate in force now (at most the job's)."""
        return self._current

    def _set_rate(self, rate: float, *, floor: float | None = None) -> None:
        rate = min(self._max, max(self._max * _FLOOR_SHARE if floor is None else floor, rate))
        if rate == self._current:
            return
        self._current = rate
        # aiolimiter reads these two on every acquire; it has no public setter.
        self._limiter.time_period = 1.0 / rate
        self._limiter._rate_per_sec = rate

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

    def limited(self) -> None:
        """The server refused for rate (429): halve the pace."""
        self._set_rate(self._current * 0.5)

    def answered(self, quota: Quota | None) -> None:
        """A request was answered: climb back towards the job's rate, unless the server's
        announced quota would run dry at that pace, in which case slow to what it allows."""
        if quota is None:
            if self._current < self._max:
                self._set_rate(self._current + self._max * _CLIMB_SHARE)
            return
        if quota.remaining <= 0 and quota.reset_s > 0:
            self.pause_for(quota.reset_s)
            return
        allowed = _QUOTA_MARGIN * quota.remaining / max(quota.reset_s, 0.001)
        climbed = self._current + self._max * _CLIMB_SHARE
        self._set_rate(min(climbed, allowed), floor=min(_QUOTA_FLOOR_RATE, self._max))

    async def ready(self) -> None:
        """Returns once a request entering now would start at once: a concurrency slot free,
        the rate's turn come, no pause. Takes nothing. For the batcher (engine's hook): a
        batch keeps taking rows until its request can really go."""
        while True:
            wait = self._pause_until - self._now()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self._slots.locked():
                await self._slots.acquire()  # wait for a free slot, then give it back
                self._slots.release()
                continue
            limit = max(1, math.floor(self._current))
            if len(self._starts) >= limit:
                free_at = self._starts[-limit] + 1.0 + _WINDOW_MARGIN_S
                if free_at > self._now():
                    await asyncio.sleep(free_at - self._now())
                    continue
            if self._limiter.has_capacity():
                return
            # The bucket (capacity 1) empties at the current rate; 2 % of a turn more, so that
            # the server's clock, a millisecond off ours, never sees rate + 1 in a second.
            await asyncio.sleep((max(self._limiter._level, 1e-3) + _READY_MARGIN) / self._current)

    async def __aenter__(self) -> None:
        entered = self._now()
        await self._slots.acquire()
        try:
            while True:
                wait = self._pause_until - self._now()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._limiter.acquire()
                # A pause may have begun while this request queued for its turn.
                if self._pause_until <= self._now():
                    now = self._now()
                    self._starts.append(now)  # engine's hook: ready()'s window
                    clock.waited(now - entered)  # engine's hook: the row's wait
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
