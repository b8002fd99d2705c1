"""Credentials that come from a sign-in and must last the whole run.

Adaxes before 2026.1 signs in with a session (`authSessions/create`) that yields tokens
(`auth`); DocSpace signs in (`authentication`) for a personal access token. Both expire, so a
token is renewed a little before its end (Adaxes: `PATCH /api/auth`; DocSpace: a new
sign-in), and a 401 in the middle of a run signs in again. All workers share one sign-in
behind one lock: one renewal at a time, and a worker that meets a 401 after another has
already signed in again just takes the new token.

Both servers slow down repeated failed sign-ins, so a refused sign-in is never repeated: it
raises `AuthRefused` (the run stops, exit 3), and every later call hears the same refusal
without a request. Only a lost connection, a timeout or a gateway answer is tried again, a
few times.

No secret gets out: the password, tokens and session ids live in `Secret`; error texts are
made of status codes and the server's own words (with any secret scrubbed out), never of an
aiohttp exception's text, which may hold a URL whose query carries the token (sign-out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl as ssl_module
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson

from bulkgroups.http.auth import AuthRefused
from bulkgroups.http.policy import parse_retry_after
from bulkgroups.model import TargetKind
from bulkgroups.secret import Secret

log = logging.getLogger(__name__)

# Renew when less than this share of a token's life is left, but never more than
# RENEW_MAX_S before its end: a 30-minute token is renewed a minute early, a 2-second one
# 0.4 s early.
RENEW_SHARE = 0.2
RENEW_MAX_S = 60.0
# A renewal that got no answer is tried again this much later, while the token still holds.
RENEW_AGAIN_S = 5.0
# Extra tries of a sign-in request that got no answer (never of a refusal).
SIGNIN_RETRIES = 3
_RETRY_BASE_S = 0.25
_RETRY_AFTER_CAP_S = 10.0
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Sign-out is a courtesy at the end of a run: one try, and never a long wait.
SIGN_OUT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Login:
    """A user name and password from the job's username_env / password_env."""

    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class Grant:
    """One signed-in token, and when to act on it (monotonic seconds; None: not known, so
    only a 401 renews it)."""

    token: Secret
    headers: dict[str, str] = field(repr=False)
    renew_at: float | None
    expires_at: float | None

    def due(self, now: float) -> bool:
        return self.renew_at is not None and now >= self.renew_at

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class _NoAnswer(Exception):
    """No usable answer after the retries; the text is safe to show."""


def seconds_left(expires: object, *, now: datetime | None = None) -> float | None:
    """Seconds until an ISO-8601 expiry (UTC when it names no zone); None if unreadable."""
    if not isinstance(expires, str) or not expires.strip():
        return None
    try:
        when = datetime.fromisoformat(expires.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - (now or datetime.now(UTC))).total_seconds()


def _describe(exc: BaseException, timeout_s: float) -> str:
    # Only the kind of failure: aiohttp's texts can carry the URL, and with it a token.
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return f"connection error: {type(exc).__name__}"


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _text(body: Any, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def server_words(body: Any) -> str:
    """What the server said about a refused sign-in, from either API's error shape."""
    if not isinstance(body, dict):
        return "no message"
    parts: list[str] = []
    for source in (body, body.get("innerError"), body.get("error")):
        said = _text(source, "message")
        if said is not None and said not in parts:
            parts.append(said)
    inner = body.get("innerError")
    left = inner.get("attemptsLeft") if isinstance(inner, dict) else None
    if isinstance(left, int) and not isinstance(left, bool):
        parts.append(f"(attempts left: {left})")
    return " ".join(parts) or "no message"


class SignIn:
    """`Auth` from a user name and password. Use as `async with`: it owns a small HTTP
    session for its own requests, and signs out on the way out."""

    __slots__ = (
        "_base",
        "_clock",
        "_failed",
        "_grant",
        "_lock",
        "_login",
        "_session",
        "_ssl",
        "_timeout_s",
    )

    api = "the target"  # for messages

    def __init__(
        self,
        *,
        base_url: str,
        login: Login,
        ssl: ssl_module.SSLContext | bool = True,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._login = login
        self._ssl = ssl
        self._timeout_s = timeout_s
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._grant: Grant | None = None
        self._failed: AuthRefused | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._base!r}, user={self._login.username!r})"

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=4, ssl=self._ssl)
        self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        # As in the transport: no hidden resend by aiohttp; the retries here are counted.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Sign out (best effort: a failure is logged, never raised) and close the session."""
        session = self._session
        if session is None:
            return
        try:
            if self._grant is not None:
                await self._sign_out()
        finally:
            self._session = None
            self._grant = None
            await session.close()

    # -- Auth -------------------------------------------------------------------------------

    async def headers(self) -> dict[str, str]:
        grant = self._grant
        if grant is not None:
            now = self._clock()
            if not grant.due(now):
                return grant.headers
            if self._lock.locked() and not grant.expired(now):
                return grant.headers  # another worker is renewing it; it still holds
        async with self._lock:
            self._raise_if_failed()
            grant = self._grant
            now = self._clock()
            if grant is None or grant.expired(now):
                grant = await self._fresh()
            elif grant.due(now):
                grant = await self._renewed(grant)
            return grant.headers

    async def renew(self, stale: dict[str, str]) -> bool:
        """On a 401: sign in again, unless another worker already did since `stale` went out."""
        async with self._lock:
            self._raise_if_failed()
            if self._grant is not None and self._grant.headers != stale:
                return True
            await self._fresh()
            return True

    # -- the parts each API fills in --------------------------------------------------------

    def _headers_for(self, token: str) -> dict[str, str]:
        raise NotImplementedError

    async def _sign_in(self) -> Grant:
        """A full sign-in. Raises AuthRefused when refused, _NoAnswer when never answered."""
        raise NotImplementedError

    async def _refresh(self, grant: Grant) -> Grant:
        """A fresh grant before `grant` runs out; by default a new sign-in."""
        return await self._sign_in()

    async def _sign_out(self) -> None:
        """End what the server holds for this run (nothing by default)."""

    # -- shared -----------------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise AuthRefused(str(self._failed))

    async def _fresh(self) -> Grant:
        try:
            grant = await self._sign_in()
        except _NoAnswer as exc:
            self._failed = AuthRefused(self._scrub(f"cannot sign in to {self.api}: {exc}"))
            raise AuthRefused(str(self._failed)) from None
        except AuthRefused as exc:
            self._failed = exc
            raise
        self._grant = grant
        return grant

    async def _renewed(self, grant: Grant) -> Grant:
        try:
            fresh = await self._refresh(grant)
        except _NoAnswer as exc:
            # The token still holds: go on with it, and try again a little later.
            log.warning("%s: renewing the sign-in failed (%s); trying again shortly", self.api,
                        self._scrub(str(exc)))
            later = self._clock() + RENEW_AGAIN_S
            fresh = dataclasses.replace(grant, renew_at=later)
        except AuthRefused as exc:
            self._failed = exc
            raise
        self._grant = fresh
        return fresh

    def _grant_of(self, token: str, expires: object) -> Grant:
        now = self._clock()
        left = seconds_left(expires)
        headers = self._headers_for(token)
        if left is None or left <= 0:
            # Unreadable, or already past by this machine's clock (the clocks disagree):
            # renew on the server's 401 only.
            return Grant(Secret(token), headers, None, None)
        margin = min(RENEW_SHARE * left, RENEW_MAX_S)
        return Grant(Secret(token), headers, now + left - margin, now + left)

    def _secrets(self) -> Iterator[str]:
        yield self._login.password.reveal()
        if self._grant is not None:
            yield self._grant.token.reveal()

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, "***")
        return text

    def _refused(self, status: int, body: Any) -> AuthRefused:
        return AuthRefused(
            self._scrub(
                f"{self.api} refused the sign-in (HTTP {status}): {server_words(body)}; "
                "not tried again: the server slows down repeated failed sign-ins"
            )
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        tries: int = 1 + SIGNIN_RETRIES,
        timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """The status and decoded body of the first real answer; a lost connection, a timeout
        or a 429/502/503/504 is tried again up to `tries` times in all."""
        if self._session is None:
            raise RuntimeError("use the sign-in as `async with` first")
        wait_s = self._timeout_s if timeout_s is None else timeout_s
        timeout = aiohttp.ClientTimeout(total=wait_s)
        url = self._base + path
        last = "no answer"
        delay = _RETRY_BASE_S
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                async with self._session.request(
                    method, url, json=json, params=params, timeout=timeout
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                    after = parse_retry_after(resp.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = _describe(exc, wait_s)
                continue
            if status in _RETRY_STATUSES:
                last = f"HTTP {status}"
                if after is not None:
                    delay = max(delay, min(after, _RETRY_AFTER_CAP_S))
                continue
            return status, _decode(raw)
        raise _NoAnswer(last)


class AdaxesSignIn(SignIn):
    """Adaxes legacy sign-in: a session, then a token sent as `Adm-Authorization`."""

    __slots__ = ("_patch", "_sessions")

    api = "Adaxes"

    def __init__(
        self,
        *,
        base_url: str,
        login: Login,
        ssl: ssl_module.SSLContext | bool = True,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(base_url=base_url, login=login, ssl=ssl, timeout_s=timeout_s,
                         clock=clock)
        self._sessions: list[Secret] = []  # every session this run opened, to end at sign-out
        self._patch = True  # False once the server showed it has no PATCH renewal

    def _headers_for(self, token: str) -> dict[str, str]:
        return {"Adm-Authorization": token}

    def _secrets(self) -> Iterator[str]:
        yield from super()._secrets()
        yield from (s.reveal() for s in self._sessions)

    async def _sign_in(self) -> Grant:
        login = {"username": self._login.username, "password": self._login.password.reveal()}
        status, body = await self._call("POST", "/api/authSessions/create", json=login)
        session = _text(body, "sessionId")
        if not 200 <= status < 300 or session is None:
            raise self._refused(status, body)
        self._sessions.append(Secret(session))
        status, body = await self._call("POST", "/api/auth", json={"sessionId": session})
        token = _text(body, "token")
        if not 200 <= status < 300 or token is None:
            raise self._refused(status, body)
        return self._grant_of(token, body.get("expiresAtUtc"))

    async def _refresh(self, grant: Grant) -> Grant:
        if self._patch:
            status, body = await self._call(
                "PATCH", "/api/auth", json={"token": grant.token.reveal()}, tries=2
            )
            if 200 <= status < 300:
                token = _text(body, "token") or grant.token.reveal()
                expires = body.get("expiresAtUtc") if isinstance(body, dict) else None
                return self._grant_of(token, expires)
            if status not in (401, 403):
                # No renewal on this server (it is documented by third parties only).
                self._patch = False
        # The token is no longer renewable (or renewal does not exist): a new sign-in.
        return await self._sign_in()

    async def _sign_out(self) -> None:
        requests: list[tuple[str, dict[str, str]]] = []
        if self._grant is not None:
            requests.append(("/api/auth", {"token": self._grant.token.reveal()}))
        requests += [("/api/authSessions", {"id": s.reveal()}) for s in reversed(self._sessions)]
        for path, params in requests:
            try:
                status, _ = await self._call(
                    "DELETE", path, params=params, tries=1, timeout_s=SIGN_OUT_TIMEOUT_S
                )
            except _NoAnswer as exc:
                log.warning("Adaxes sign-out (%s) got no answer: %s", path, exc)
                continue
            if not 200 <= status < 300 and status != 404:
                log.warning("Adaxes sign-out (%s) answered HTTP %d", path, status)
        self._sessions.clear()


class DocSpaceSignIn(SignIn):
    """DocSpace personal access token, sent bare in `Authorization`; it cannot be extended,
    so renewing it is a new sign-in."""

    __slots__ = ()

    api = "DocSpace"

    def _headers_for(self, token: str) -> dict[str, str]:
        return {"Authorization": token}

    async def _sign_in(self) -> Grant:
        login = {"userName": self._login.username, "password": self._login.password.reveal()}
        status, body = await self._call("POST", "/api/2.0/authentication", json=login)
        answer = body.get("response") if isinstance(body, dict) else None
        token = _text(answer, "token")
        if 200 <= status < 300 and token is None:
            # DocSpace answers without a token when the account needs a second factor.
            raise AuthRefused(
                "DocSpace signed in without a token (two-factor sign-in is not supported): "
                "use an API key with token_env or token_file instead"
            )
        if not 200 <= status < 300 or token is None:
            raise self._refused(status, body)
        assert isinstance(answer, dict)
        return self._grant_of(token, answer.get("expires"))


def sign_in_for(
    kind: TargetKind,
    *,
    base_url: str,
    login: Login,
    ssl: ssl_module.SSLContext | bool = True,
    timeout_s: float = 30.0,
) -> SignIn:
    """The `Auth` that signs in with a user name and password (DocSpace: a personal access
    token; Adaxes: the legacy session and token), keeps it fresh, and signs out when its
    `async with` ends."""
    if kind is TargetKind.DOCSPACE:
        return DocSpaceSignIn(base_url=base_url, login=login, ssl=ssl, timeout_s=timeout_s)
    if kind is TargetKind.ADAXES:
        return AdaxesSignIn(base_url=base_url, login=login, ssl=ssl, timeout_s=timeout_s)
    raise ValueError(f"unknown target kind {kind!r}")
