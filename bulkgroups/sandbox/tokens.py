"""Signed-in tokens and sessions with a lifetime."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta


def utc_in(seconds: float) -> str:
    """ISO-8601 UTC time `seconds` from now, e.g. 2025-01-31T12:00:00.000000Z."""
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TokenStore:
    """Opaque random tokens, each valid until its monotonic deadline."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._deadline: dict[str, float] = {}
        self._issued: list[str] = []  # kept after revoke, for `issued()`

    def issue(self, ttl_s: float) -> tuple[str, str]:
        """A new token and its expiry as ISO-8601 UTC."""
        token = self._prefix + secrets.token_urlsafe(32)
        self._deadline[token] = time.monotonic() + ttl_s
        self._issued.append(token)
        return token, utc_in(ttl_s)

    def valid(self, token: str) -> bool:
        deadline = self._deadline.get(token)
        return deadline is not None and deadline > time.monotonic()

    def renew(self, token: str, ttl_s: float) -> str | None:
        """Extend a valid token; its new expiry, or None if it is not valid."""
        if not self.valid(token):
            return None
        self._deadline[token] = time.monotonic() + ttl_s
        return utc_in(ttl_s)

    def issued(self) -> list[str]:
        """Every token issued so far, oldest first, valid or not (for tests that look for
        leaks)."""
        return list(self._issued)

    def revoke(self, token: str) -> bool:
        return self._deadline.pop(token, None) is not None

    def expire_all(self) -> int:
        """Every token issued so far is expired from now on; how many were valid."""
        now = time.monotonic()
        valid = sum(1 for d in self._deadline.values() if d > now)
        for token in self._deadline:
            self._deadline[token] = float("-inf")
        return valid
