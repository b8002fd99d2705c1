"""What to do with an answer: the retry and status policy as one pure function, no I/O.

`decide(seen, policy)` takes what one attempt got (status, headers, what the body was, how
many tries and waits this request has had, whether a write may have been applied, whether any
request of the run has succeeded yet) and returns one decision:

- `Done`: hand the answer to the caller (2xx, or a final answer the adapter reads);
- `Retry(after_s)`: send again after `after_s` (None: the policy's jittered backoff);
- `PauseAll(seconds)`: every worker waits (a 429); the request is then sent again without
  spending a retry;
- `Refuse(error)`: the whole run stops (exit 3) with an `AuthRefused` subclass;
- `Fail(message)`: the request is over, the row fails with `message`.

The transport only sends and applies decisions (as singer_sdk's `validate_response` and
stamina's predicate + backoff hook keep the decision out of the request loop).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from urllib.parse import urlsplit

from bulkgroups.http.auth import AuthRefused
from bulkgroups.http.quota import parse_reset

# 429 and 503 both mean "slow down" (DocSpace documents 503 with Retry-After for rate limiting);
# 502 and 504 are a proxy that lost the backend. Any other 4xx is the request's own fault.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
GATEWAY_STATUSES = frozenset({502, 503, 504})

# A Retry-After longer than this is not waited out: the daily write cap answers up to a day.
MAX_RETRY_AFTER_S = 900.0

# A bare 429 (no Retry-After: DocSpace's sliding window is full) pauses every worker this
# long, doubling on repeats up to the window's length (DocSpace: 1500 requests a minute).
WINDOW_PAUSE_START_S = 2.0
WINDOW_S = 60.0


class BodyKind(StrEnum):
    """What an answer's body was; the value is the text a message shows."""

    JSON = "JSON"
    HTML = "HTML page"
    EMPTY = "empty"
    NOT_JSON = "not JSON"
    TOO_LARGE = "too large"
    NONE = "none"  # no answer at all


class RedirectRefused(AuthRefused):
    """The server redirects before any request succeeded: base_url is wrong (or hostile);
    nothing is sent elsewhere."""


class TenantRefused(AuthRefused):
    """The portal itself is unavailable to this account: suspended (404, empty body, on
    every path) or unpaid (402)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 5
    base_s: float = 0.25
    cap_s: float = 30.0
    # 429s do not spend `max_retries`; this bounds how long one request waits on them.
    limited_budget_s: float = 900.0

    def backoff_s(self, retry: int, *, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)] (retry counts from 0)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(retry, 30)))
        return float((rng or random).uniform(0.0, ceiling))

    def should_retry(self, *, attempts: int, status: int | None) -> bool:
        """`status` None means no HTTP answer (connection error or timeout): retryable."""
        if attempts > self.max_retries:
            return False
        return status is None or status in RETRYABLE_STATUSES


def window_pause_s(
    streak: int, *, start_s: float = WINDOW_PAUSE_START_S, max_s: float = WINDOW_S
) -> float:
    """The pause after the `streak`-th bare 429 in a row (1-based): 2, 4, 8 … up to 60 s."""
    return min(max_s, start_s * 2.0 ** max(0, min(streak, 16) - 1))


@dataclass(frozen=True, slots=True)
class Seen:
    """One attempt's answer, as the policy needs it."""

    status: int | None  # None: no answer (`error` says why)
    headers: Mapping[str, str]
    kind: BodyKind
    message: str  # the server's own words (scrubbed), "no message" when none
    tries: int  # attempts of this request that count against max_retries (this one included)
    limited_s: float = 0.0  # seconds this request already waited on 429s
    error: str | None = None
    first: bool = False  # no request of the run has succeeded yet
    credentials: bool = True  # the request carried the run's credentials (not a sign-in)
    renewed: bool = False  # a 401 was already answered by a new sign-in
    base_host: str = ""


@dataclass(frozen=True, slots=True)
class Done:
    pass


@dataclass(frozen=True, slots=True)
class Retry:
    after_s: float | None  # None: the policy's backoff
    reason: str  # why, should the retries run out (the row's error)


@dataclass(frozen=True, slots=True)
class PauseAll:
    seconds: float | None  # None: the window is full, the pacer's growing pause decides
    reason: str


@dataclass(frozen=True, slots=True)
class Renew:
    """A 401 with credentials that can be renewed: sign in again, then resend."""


@dataclass(frozen=True, slots=True)
class Refuse:
    error: AuthRefused


@dataclass(frozen=True, slots=True)
class Fail:
    message: str


Decision = Done | Retry | PauseAll | Renew | Refuse | Fail


def decide(seen: Seen, policy: RetryPolicy) -> Decision:
    status = seen.status
    if status is None:
        return _again(seen, policy, seen.error or "no answer")
    if seen.kind is BodyKind.TOO_LARGE:
        # Not retried: it would be as large again. Not a refusal: one group may be huge.
        return Fail(seen.error or f"HTTP {status}: the answer is larger than its limit")
    if 200 <= status < 300:
        return Done()
    if 300 <= status < 400:
        return _redirect(seen)
    if status == 429 or (status == 503 and _retry_after(seen) is not None):
        return _limited(seen, policy)
    if status in GATEWAY_STATUSES:
        return _again(seen, policy, _gateway_words(seen))
    refused = _refusal(seen)
    if refused is not None:
        return refused
    return Done()


def _again(seen: Seen, policy: RetryPolicy, reason: str) -> Decision:
    if seen.tries > policy.max_retries:
        return Fail(reason)
    return Retry(None, reason)


def _gateway_words(seen: Seen) -> str:
    if seen.kind is BodyKind.JSON and seen.message != "no message":
        return seen.message
    if seen.kind in (BodyKind.HTML, BodyKind.EMPTY, BodyKind.NOT_JSON):
        shown = "empty body" if seen.kind is BodyKind.EMPTY else seen.kind.value
        return f"HTTP {seen.status} from a proxy ({shown})"
    return f"HTTP {seen.status} without a message"


def location_host(headers: Mapping[str, str], base_host: str) -> str:
    """The host a redirect points at (a relative Location stays on `base_host`)."""
    where = headers.get("Location", "").strip()
    if not where:
        return "nowhere (no Location)"
    try:
        host = urlsplit(where).hostname
    except ValueError:
        return "an unreadable Location"
    return host or base_host


def _redirect(seen: Seen) -> Decision:
    host = location_host(seen.headers, seen.base_host)
    if seen.first:
        return Refuse(RedirectRefused(
            f"the server redirects to {host} (HTTP {seen.status}): check base_url; "
            "no redirect is followed"
        ))
    return Fail(f"HTTP {seen.status} redirect to {host}: not followed")


def _retry_after(seen: Seen) -> float | None:
    after = parse_retry_after(seen.headers.get("Retry-After"))
    if after is None:
        after = parse_reset(seen.headers)
    return after


def _limited(seen: Seen, policy: RetryPolicy) -> Decision:
    after = _retry_after(seen)
    if after is not None and after > MAX_RETRY_AFTER_S:
        return Fail(f"rate limited for {after:.0f} s")
    if seen.limited_s >= policy.limited_budget_s:
        return Fail(f"rate limited: still refused after waiting {seen.limited_s:.0f} s")
    # A 503 with Retry-After slows everyone, but is also a failure: it spends a retry.
    if seen.status == 503 and seen.tries > policy.max_retries:
        return Fail(_gateway_words(seen))
    return PauseAll(after, f"HTTP {seen.status}: rate limited")


def _refusal(seen: Seen) -> Decision | None:
    status, said = seen.status, seen.message
    if said == "no message" and seen.kind is not BodyKind.JSON:
        said = "empty body" if seen.kind is BodyKind.EMPTY else seen.kind.value
    if status == 402:
        why = "the tenant is unpaid" if seen.kind is BodyKind.EMPTY else said
        return Refuse(TenantRefused(f"402 payment required: {why}"))
    if status == 404 and seen.first and seen.kind is BodyKind.EMPTY:
        return Refuse(TenantRefused(
            "the portal answers 404 with an empty body on every path: tenant suspended? "
            "(or check base_url)"
        ))
    if not seen.credentials:
        return None  # a sign-in judges its own 401 and 403
    if status == 401:
        if not seen.renewed:
            return Renew()
        return Refuse(AuthRefused(f"the target refused the credentials (401): {said}"))
    if status == 403 and seen.first:
        if seen.kind is BodyKind.EMPTY:
            said = "empty body (a missing API-key scope, or the tenant is being transferred)"
        return Refuse(AuthRefused(f"the target refused access (403) on the first requests: {said}"))
    return None


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
