"""Pacing for every request of a run: a steady rate that adapts to the server, a cap on
requests in flight, a pause that every worker honours when the server says to wait, and a
stop (`abandon()`) that wakes every one of those waits at once.

The rate is a GCRA of burst 1 (virtual scheduling): each request books the next free
instant `1/rate` after the previous booking and sleeps until it, so no one-second window
holds more than `rate` requests and a rate change applies to the very next booking. It
replaces aiolimiter, which has no public way to change its rate (the old code wrote its
private `_rate_per_sec`) and whose waits cannot be woken by a stop.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from types import TracebackType

from bulkgroups.http.policy import WINDOW_PAUSE_START_S, WINDOW_S, window_pause_s
from bulkgroups.http.quota import Quota
from bulkgroups.model import Abandoned

# After a 429 the rate halves (never below this share of the job's rate); each answered
# request then wins back this share, so full speed returns after about 50 good answers.
_FLOOR_SHARE = 0.05
_CLIMB_SHARE = 0.02
# Spend a quota at this share of what it allows, so jitter does not run it dry.
_QUOTA_MARGIN = 0.9
# No more than `rate` requests start in any 1 s + this margin: a request's start at the
# server lags ours by its connection set-up (~30 ms for the first on loopback), which would
# otherwise put rate + 1 starts in one of the server's seconds (from the engine branch).
_WINDOW_MARGIN_S = 0.05
# A quota states what the server allows, so it may pull the rate below the AIMD floor.
_QUOTA_FLOOR_RATE = 0.2


class Pacer:
    """`async with pacer:` around each request (a slot, then its turn); `await turn()` for a
    request that must not take a slot (a sign-in, which the slot holders wait for)."""

    __slots__ = (
        "_current",
        "_loop",
        "_max",
        "_next_at",
        "_pause_until",
        "_slots",
        "_starts",
        "_stop",
        "_streak",
        "_window",
    )

    def __init__(
        self,
        *,
        rate: float,
        concurrency: int,
        window_start_s: float = WINDOW_PAUSE_START_S,
        window_max_s: float = WINDOW_S,
    ) -> None:
        """`window_start_s`, `window_max_s`: the pause after a bare 429, and its bound."""
        if rate <= 0 or concurrency < 1:
            raise ValueError("rate must be > 0 and concurrency >= 1")
        self._max = rate
        self._current = rate
        self._next_at = 0.0  # the GCRA's theoretical arrival time of the next request
        self._slots = asyncio.Semaphore(concurrency)
        self._pause_until = 0.0
        self._streak = 0  # bare 429 pauses since the last answer that was not a 429
        self._window = (window_start_s, window_max_s)
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # When the last `rate` requests were let through: no one-second window (as the
        # server sees it) holds more than `rate` starts.
        self._starts: deque[float] = deque(maxlen=max(1, math.ceil(rate)))

    # -- state ------------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The rate in force now (at most the job's)."""
        return self._current

    @property
    def abandoned(self) -> bool:
        return self._stop.is_set()

    def _set_rate(self, rate: float, *, floor: float | None = None) -> None:
        self._current = min(self._max, max(self._max * _FLOOR_SHARE if floor is None else floor,
                                           rate))

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

    def window_full(self) -> float:
        """A bare 429: the server's window is full and it does not say for how long. Every
        worker pauses (2 s, doubling on each new refusal up to the window's 60 s) and the
        rate halves, to climb back slowly. 429s met while a pause is on (requests already
        in flight) extend nothing. Returns the pause in force."""
        if self.paused_s <= 0:
            self._streak += 1
            self.limited()
            start_s, max_s = self._window
            self.pause_for(window_pause_s(self._streak, start_s=start_s, max_s=max_s))
        return self.paused_s

    def answered(self, quota: Quota | None) -> None:
        """A request was answered: climb back towards the job's rate, unless the server's
        announced quota would run dry at that pace, in which case slow to what it allows."""
        self._streak = 0
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

    # -- stopping ---------------------------------------------------------------------------

    def abandon(self) -> None:
        """The run stops: every wait here ends at once, raising `Abandoned`."""
        self._stop.set()

    def check(self) -> None:
        if self._stop.is_set():
            raise Abandoned("the run is stopping")

    async def sleep(self, seconds: float) -> None:
        """Sleep, unless the run stops first (then `Abandoned`)."""
        self.check()
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return
        raise Abandoned("the run is stopping")

    # -- waiting for a turn -----------------------------------------------------------------

    def _free_at(self, now: float) -> float:
        """When the next request may start: after any pause, its GCRA turn, and a second
        (+ margin) after the `rate`-th last start."""
        at = max(now, self._pause_until, self._next_at)
        limit = max(1, math.floor(self._current))
        if len(self._starts) >= limit:
            at = max(at, self._starts[-limit] + 1.0 + _WINDOW_MARGIN_S)
        return at

    async def turn(self, *, first: bool = False) -> None:
        """Wait out any pause, then this request's place in the rate. `first`: a request the
        others wait for (a sign-in or renewal) goes ahead of the booked turns, and pushes
        the schedule back by one interval so the rate still holds over time."""
        while True:
            now = self._now()
            if self._pause_until > now:
                await self.sleep(self._pause_until - now)
                continue
            if first:
                self._next_at = max(now, self._next_at) + 1.0 / self._current
                self.check()
                self._starts.append(now)
                return
            at = self._free_at(now)
            self._next_at = at + 1.0 / self._current
            await self.sleep(at - now)
            # A pause may have begun while this request waited for its turn.
            now = self._now()
            if self._pause_until <= now:
                self.check()
                self._starts.append(now)
                return

    async def ready(self) -> None:
        """Returns once a request entering now would start at once: a concurrency slot free,
        the rate's turn come, no pause. Takes nothing. For the batcher (engine's hook): a
        batch keeps taking rows until its request can really go. Abandoned on a stop."""
        while True:
            now = self._now()
            wait = self._free_at(now) - now
            if wait > 0:
                await self.sleep(wait)
                continue
            if self._slots.locked():
                await self._take_slot()  # wait for a free slot, then give it back
                self._slots.release()
                continue
            self.check()
            return

    async def _take_slot(self) -> None:
        self.check()
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        taking = asyncio.ensure_future(self._slots.acquire())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not taking.done():
                taking.cancel()
            elif not taking.cancelled() and (self._stop.is_set() or _cancelling()):
                self._slots.release()  # taken, but not to be used
        self.check()

    async def __aenter__(self) -> None:
        await self._take_slot()
        try:
            await self.turn()
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


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
