"""Retry policy and Retry-After parsing: pure logic, no server."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from bulkgroups.http.auth import AuthRefused
from bulkgroups.http.policy import (
    RETRYABLE_STATUSES,
    BodyKind,
    Done,
    Fail,
    PauseAll,
    RedirectRefused,
    Refuse,
    Renew,
    Retry,
    RetryPolicy,
    Seen,
    TenantRefused,
    decide,
    parse_retry_after,
    window_pause_s,
)
from bulkgroups.http.scrub import Scrubber


def test_retryable_set_is_explicit() -> None:
    """Only 429, 502, 503 and 504 are retried among HTTP statuses."""
    assert frozenset({429, 502, 503, 504}) == RETRYABLE_STATUSES


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 500])
def test_other_statuses_are_not_retried(status: int) -> None:
    """A 4xx (and a plain 500) is the request's fault or unknown: never sent again."""
    assert not RetryPolicy().should_retry(attempts=1, status=status)


def test_connection_errors_are_retried_until_the_budget_ends() -> None:
    """No answer is retried, up to max_retries extra attempts and not one more."""
    policy = RetryPolicy(max_retries=2)
    assert policy.should_retry(attempts=1, status=None)
    assert policy.should_retry(attempts=2, status=503)
    assert not policy.should_retry(attempts=3, status=None)


def test_backoff_is_full_jitter_within_the_exponential_ceiling() -> None:
    """Each delay lies in [0, min(cap, base*2**n)] and the draws spread over that range."""
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    rng = random.Random(7)
    for n, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0)]:
        draws = [policy.backoff_s(n, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8 and min(draws) < ceiling * 0.2


def test_retry_after_seconds() -> None:
    """Delta-seconds are read as seconds, fractions too."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5


def test_retry_after_http_date() -> None:
    """An HTTP-date gives the seconds from now until then."""
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)


@pytest.mark.parametrize("value", [None, "", "soon", "-"])
def test_retry_after_unreadable(value: str | None) -> None:
    """A missing or unreadable header gives None, never an exception."""
    assert parse_retry_after(value) is None


def test_retry_after_in_the_past_is_zero() -> None:
    """A date already past, or a negative number, means no wait."""
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now) == 0
    assert parse_retry_after("-3") == 0.0


# -- the decision (policy.decide): pure, one case per rule ------------------------------------



def seen(status: int | None, *, kind: BodyKind = BodyKind.JSON, headers: dict[str, str] | None
         = None, tries: int = 1, **kw: object) -> Seen:
    return Seen(status=status, headers=headers or {}, kind=kind, message="said", tries=tries,
                **kw)  # type: ignore[arg-type]


def test_decide_done_retry_fail() -> None:
    policy = RetryPolicy(max_retries=1)
    assert decide(seen(200), policy) == Done()
    assert decide(seen(400), policy) == Done()  # the adapter reads the refusal
    assert decide(seen(None, error="no answer within 1 s"), policy) == Retry(
        None, "no answer within 1 s")
    assert decide(seen(None, error="x", tries=2), policy) == Fail("x")
    assert decide(seen(504, kind=BodyKind.HTML, tries=2), policy) == Fail(
        "HTTP 504 from a proxy (HTML page)")
    assert decide(seen(200, kind=BodyKind.TOO_LARGE, error="big"), policy) == Fail("big")


def test_decide_redirects_refuse_first_then_fail() -> None:
    headers = {"Location": "http://evil.example:8080/x"}
    first = decide(seen(307, headers=headers, first=True), RetryPolicy())
    assert isinstance(first, Refuse) and isinstance(first.error, RedirectRefused)
    assert "redirects to evil.example" in str(first.error)
    assert decide(seen(302, headers=headers), RetryPolicy()) == Fail(
        "HTTP 302 redirect to evil.example: not followed")
    relative = decide(seen(301, headers={"Location": "/y"}, base_host="h"), RetryPolicy())
    assert relative == Fail("HTTP 301 redirect to h: not followed")


def test_decide_429s_pause_without_spending_retries() -> None:
    policy = RetryPolicy(max_retries=0, limited_budget_s=100)
    assert decide(seen(429, kind=BodyKind.EMPTY, tries=5), policy) == PauseAll(
        None, "HTTP 429: rate limited")
    assert decide(seen(429, headers={"Retry-After": "3"}), policy) == PauseAll(
        3.0, "HTTP 429: rate limited")
    assert decide(seen(429, headers={"X-RateLimit-Reset": "7"}), policy) == PauseAll(
        7.0, "HTTP 429: rate limited")
    assert decide(seen(429, headers={"Retry-After": "86400"}), policy) == Fail(
        "rate limited for 86400 s")
    assert isinstance(decide(seen(429, limited_s=100.0), policy), Fail)


def test_decide_refusals() -> None:
    policy = RetryPolicy()
    assert decide(seen(401), policy) == Renew()
    refused = decide(seen(401, renewed=True), policy)
    assert isinstance(refused, Refuse) and "401" in str(refused.error)
    assert isinstance(decide(seen(403, first=True), policy), Refuse)
    assert decide(seen(403), policy) == Done()
    unpaid = decide(seen(402, kind=BodyKind.EMPTY), policy)
    assert isinstance(unpaid, Refuse) and isinstance(unpaid.error, TenantRefused)
    assert str(unpaid.error) == "402 payment required: the tenant is unpaid"
    suspended = decide(seen(404, kind=BodyKind.EMPTY, first=True), policy)
    assert isinstance(suspended, Refuse) and "tenant suspended?" in str(suspended.error)
    assert decide(seen(404, kind=BodyKind.EMPTY), policy) == Done()
    assert decide(seen(404, first=True), policy) == Done()  # a JSON 404: a missing group
    # A sign-in judges its own 401/403.
    assert decide(seen(401, credentials=False), policy) == Done()
    assert issubclass(TenantRefused, AuthRefused) and issubclass(RedirectRefused, AuthRefused)


def test_window_pause_grows_to_the_window() -> None:
    assert [window_pause_s(n) for n in (1, 2, 3, 4, 5, 6, 50)] == [2, 4, 8, 16, 32, 60, 60]


def test_scrubber_masks_secrets_and_shapes_but_keeps_ids() -> None:
    s = Scrubber(["hunter2-password", "tok-ABCdef123"])
    text = ("bad token tok-ABCdef123 / Bearer abc.def / sk-live-xyz / pw hunter2-password / "
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl / "
            "key 9f8e7d6c5b4a39281706f5e4d3c2b1a0ZZ9f8e7d6c5b4a / token=abc123 / "
            "group 0f8a6c1e-6a49-4f7e-9d0e-6a1f0c2b3d4e / S-1-5-21-3623811015-3361044348-30300820"
            "-1013 / CN=Ann Lee,OU=People")
    out = s.scrub(text)
    for leaked in ("tok-ABCdef123", "abc.def", "sk-live-xyz", "hunter2-password", "eyJhbGci",
                   "9f8e7d6c5b4a39281706", "abc123"):
        assert leaked not in out
    for kept in ("0f8a6c1e-6a49-4f7e-9d0e-6a1f0c2b3d4e",
                 "S-1-5-21-3623811015-3361044348-30300820-1013", "CN=Ann Lee,OU=People"):
        assert kept in out
    assert s.scrub_bytes(b'{"m": "tok-ABCdef123"}') == b'{"m": "***"}'
