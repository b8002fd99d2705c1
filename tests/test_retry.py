"""Retry policy and Retry-After parsing: pure logic, no server."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from bulkgroups.http.policy import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after


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
