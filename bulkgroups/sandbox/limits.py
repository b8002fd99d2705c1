"""DocSpace's per-credential rate limits, chained as the server's middleware chains them:
sliding window, then concurrency caps, then the daily write cap."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Limits:
    """The server-side limits; None switches one off. Mutable so tests can change them live."""

    max_concurrent_writes: int | None = 15  # every method but GET
    max_concurrent_reads: int | None = 50
    window_requests: int | None = 1500
    window_s: float = 60.0
    daily_writes: int | None = 10000  # POST and PUT only; DELETE does not count
    daily_retry_after_s: int = 86400  # also the length of the "day"

    @classmethod
    def off(cls) -> Limits:
        """No limit at all (the shipped self-hosted configuration)."""
        return cls(
            max_concurrent_writes=None,
            max_concurrent_reads=None,
            window_requests=None,
            daily_writes=None,
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the limits turn away: 429 with an empty body and exactly these headers."""

    limiter: str  # "window" | "concurrency" | "daily"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted request; give it back with `RateLimiter.release` when it finishes."""

    credential: str
    write: bool


class RateLimiter:
    """Per-credential bookkeeping; every call is O(1) amortised."""

    def __init__(self) -> None:
        self._window: dict[str, deque[float]] = {}
        self._held: dict[tuple[str, bool], int] = {}
        self._daily: dict[str, tuple[float, int]] = {}

    def acquire(self, limits: Limits, credential: str, method: str, now: float) -> Ticket | Refusal:
        write = method != "GET"
        cap = limits.window_requests
        if cap is not None:
            times = self._window.setdefault(credential, deque())
            cutoff = now - limits.window_s
            while times and times[0] <= cutoff:
                times.popleft()
            if len(times) >= cap:
                # The middleware sends no Retry-After here, whatever the vendor's text says.
                return Refusal(
                    "window", {"X-RateLimit-Limit": str(cap), "X-RateLimit-Remaining": "0"}
                )
            # Taken now and kept, even if a later limiter refuses this request.
            times.append(now)
        key = (credential, write)
        held = self._held.get(key, 0)
        concurrent = limits.max_concurrent_writes if write else limits.max_concurrent_reads
        if concurrent is not None and held >= concurrent:
            return Refusal("concurrency")
        if method in ("POST", "PUT") and limits.daily_writes is not None:
            period = limits.daily_retry_after_s
            began, count = self._daily.get(credential, (now, 0))
            if now - began >= period:
                began, count = now, 0
            if count >= limits.daily_writes:
                wait = max(0, math.ceil(began + period - now))
                return Refusal(
                    "daily",
                    {
                        "Retry-After": str(wait),
                        "X-RateLimit-Reset": str(int(time.time()) + wait),
                        "X-RateLimit-Limit": str(limits.daily_writes),
                        "X-RateLimit-Remaining": "0",
                    },
                )
            self._daily[credential] = (began, count + 1)
        self._held[key] = held + 1
        return Ticket(credential, write)

    def release(self, ticket: Ticket) -> None:
        key = (ticket.credential, ticket.write)
        self._held[key] -= 1
