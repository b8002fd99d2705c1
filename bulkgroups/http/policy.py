"""When to retry a request, and how long to wait: pure policy, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 429 and 503 both mean "slow down" (DocSpace documents 503 with Retry-After for rate limiting);
# 502 and 504 are a proxy that lost the backend. Any other 4xx is the request's own fault.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

# A Retry-After longer than this is not waited out: the daily write cap answers up to a day.
MAX_RETRY_AFTER_S = 900.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 5
    base_s: float = 0.25
    cap_s: float = 30.0

    def backoff_s(self, retry: int, *, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)] (retry counts from 0)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(retry, 30)))
        return (rng or random).uniform(0.0, ceiling)

    def should_retry(self, *, attempts: int, status: int | None) -> bool:
        """`status` None means no HTTP answer (connection error or timeout): retryable."""
        if attempts > self.max_retries:
            return False
        return status is None or status in RETRYABLE_STATUSES


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if absent
    or unreadable. Never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
