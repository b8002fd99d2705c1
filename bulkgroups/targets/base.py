"""What the engine needs of a target, and what a target may tell it."""

from __future__ import annotations

from typing import Protocol

from bulkgroups.model import Result, Row


class AuthRefused(Exception):
    """The target refused the credentials or their scopes: the whole run stops (exit 3)."""


class TlsRefused(AuthRefused):
    """The target's certificate is not trusted: every request would fail alike, so the run
    stops (exit 3) instead of failing row after row."""


class Target(Protocol):
    async def apply(self, row: Row) -> Result:
        """Carry out one row; every outcome but a refused credential is a Result."""
        ...


class Auth(Protocol):
    """Supplies the credential headers, and may sign in again when the target says 401."""

    async def headers(self) -> dict[str, str]: ...

    async def renew(self, stale: dict[str, str]) -> bool:
        """Called on a 401 sent with `stale`; True when fresh headers are now to be had."""
        ...


class StaticAuth:
    """A long-lived token or API key: nothing to renew, so a 401 is final."""

    __slots__ = ("_headers",)

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    async def headers(self) -> dict[str, str]:
        return self._headers

    async def renew(self, stale: dict[str, str]) -> bool:
        return False

    def __repr__(self) -> str:
        return f"StaticAuth({sorted(self._headers)!r})"
