"""Credentials: what a request carries, and the refusals that stop a whole run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from bulkgroups.model import TargetKind
from bulkgroups.secret import Secret


class AuthRefused(Exception):
    """The target refused the credentials or their scopes: the whole run stops (exit 3)."""


class TlsRefused(AuthRefused):
    """The target's certificate is not trusted: every request would fail alike, so the run
    stops (exit 3) instead of failing row after row."""


class Auth(Protocol):
    """Supplies the credential headers, and may sign in again when the target says 401."""

    async def headers(self) -> dict[str, str]: ...

    async def renew(self, stale: dict[str, str]) -> bool:
        """Called on a 401 sent with `stale`; True when fresh headers are now to be had."""
        ...

    def secrets(self) -> Iterator[str]:
        """Every secret value it holds now, for the transport to scrub from server texts."""
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

    def secrets(self) -> Iterator[str]:
        for value in self._headers.values():
            yield value
            yield value.removeprefix("Bearer ")

    def __repr__(self) -> str:
        return f"StaticAuth({sorted(self._headers)!r})"


def auth_for(kind: TargetKind, token: Secret | Auth) -> Auth:
    """DocSpace: an API key (`sk-...`) goes as `Bearer`, a personal access token bare;
    Adaxes: its own `Adm-Authorization` header. A sign-in (`sign_in_for`) is already an
    `Auth`, and is used as it is."""
    if not isinstance(token, Secret):
        return token
    value = token.reveal().strip()
    if kind is TargetKind.DOCSPACE:
        header = f"Bearer {value}" if value.startswith("sk-") else value
        return StaticAuth({"Authorization": header})
    if kind is TargetKind.ADAXES:
        return StaticAuth({"Adm-Authorization": value})
    raise ValueError(f"unknown target kind {kind!r}")
