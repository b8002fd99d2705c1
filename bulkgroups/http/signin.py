"""Credentials that come from a sign-in and must last the whole run.

Adaxes 2025.1 and older signs in with a session (`authSessions/create`) that yields tokens
(`auth`); DocSpace signs in (`authentication`) for a personal access token. Both expire, so a
token is renewed a little before its end (Adaxes: `PATCH /api/auth`; DocSpace: a new
sign-in), and a 401 in the middle of a run signs in again. All workers share one sign-in
behind one lock: one renewal at a time, and a worker that meets a 401 after another has
already signed in again just takes the new token.

Every sign-in request goes through the run's own `Transport` (`credentials=False`): the same
session (no cookie jar, no redirects), the same pacer, limits, scrubbing and retry policy.
Both servers slow down repeated failed sign-ins, so a refused sign-in is never repeated: it
raises `AuthRefused` (the run stops, exit 3), and every later call hears the same refusal
without a request. Only what the policy retries (no answer, a gateway answer, a 429) is
tried again.

No secret gets out: the password, tokens and session ids live in `Secret` and are handed to
the transport's scrubber as soon as they are known.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from bulkgroups.http.auth import AuthRefused
from bulkgroups.http.policy import RETRYABLE_STATUSES, BodyKind
from bulkgroups.http.transport import Reply, Transport
from bulkgroups.model import Abandoned, TargetKind
from bulkgroups.secret import Secret

log = logging.getLogger(__name__)

# Renew when less than this share of a token's life is left, but never more than
# RENEW_MAX_S before its end: a 30-minute token is renewed a minute early, a 2-second one
# 0.4 s early.
RENEW_SHARE = 0.2
RENEW_MAX_S = 60.0
# A renewal that got no answer is tried again this much later, while the token still holds.
RENEW_AGAIN_S = 5.0
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


def _text(body: Any, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def server_words(reply: Reply) -> str:
    """What the server said about a refused sign-in, from either API's error shape (already
    scrubbed by the transport), or what the answer was when it said nothing."""
    body = reply.body
    parts: list[str] = []
    if isinstance(body, dict):
        for source in (body, body.get("innerError"), body.get("error")):
            said = _text(source, "message")
            if said is not None and said not in parts:
                parts.append(said)
        inner = body.get("innerError")
        left = inner.get("attemptsLeft") if isinstance(inner, dict) else None
        if isinstance(left, int) and not isinstance(left, bool):
            parts.append(f"(attempts left: {left})")
    if not parts and reply.error:
        parts.append(reply.error)
    if not parts and reply.body_kind not in (BodyKind.JSON, BodyKind.NONE):
        kind = reply.body_kind
        parts.append("empty body" if kind is BodyKind.EMPTY else kind.value)
    return " ".join(parts) or "no message"


class SignIn:
    """`Auth` from a user name and password, sending through `transport` (whose `auth` it
    becomes: see `attach`). Use as `async with`: leaving it signs out."""

    __slots__ = ("_clock", "_failed", "_grant", "_lock", "_login", "_t")

    api = "the target"  # for messages

    def __init__(
        self,
        transport: Transport,
        *,
        login: Login,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._t = transport
        self._login = login
        self._clock = clock
        self._grant: Grant | None = None
        self._failed: AuthRefused | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(user={self._login.username!r})"

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Sign out (best effort: a failure is logged, never raised). A stopping run skips
        it: the stop must be quick, and the server ends the session by itself."""
        if self._grant is None:
            return
        try:
            await self._sign_out()
        except Abandoned:
            log.info("%s: sign-out skipped, the run is stopping", self.api)
        finally:
            self._grant = None

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

    def secrets(self) -> Iterator[str]:
        yield self._login.password.reveal()
        if self._grant is not None:
            yield self._grant.token.reveal()

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
            raise type(self._failed)(str(self._failed))

    async def _fresh(self) -> Grant:
        try:
            grant = await self._sign_in()
        except _NoAnswer as exc:
            self._failed = AuthRefused(self._t.scrub(f"cannot sign in to {self.api}: {exc}"))
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
                        self._t.scrub(str(exc)))
            later = self._clock() + RENEW_AGAIN_S
            fresh = dataclasses.replace(grant, renew_at=later)
        except AuthRefused as exc:
            self._failed = exc
            raise
        self._grant = fresh
        return fresh

    def _grant_of(self, token: str, expires: object) -> Grant:
        self._t.learn([token])
        now = self._clock()
        left = seconds_left(expires)
        headers = self._headers_for(token)
        if left is None or left <= 0:
            # Unreadable, or already past by this machine's clock (the clocks disagree):
            # renew on the server's 401 only.
            return Grant(Secret(token), headers, None, None)
        margin = min(RENEW_SHARE * left, RENEW_MAX_S)
        return Grant(Secret(token), headers, now + left - margin, now + left)

    def _refused(self, reply: Reply) -> AuthRefused:
        return AuthRefused(
            self._t.scrub(
                f"{self.api} refused the sign-in (HTTP {reply.status}): {server_words(reply)}; "
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
        retries: int | None = None,
        timeout_s: float | None = None,
    ) -> Reply:
        """The first real answer, through the run's transport and its retry policy; raises
        _NoAnswer when there was none (no answer, or a gateway or rate refusal to the end)."""
        reply = await self._t.send(method, path, json=json, params=params, credentials=False,
                                   retries=retries, timeout_s=timeout_s)
        if reply.status is None or reply.status in RETRYABLE_STATUSES:
            raise _NoAnswer(reply.error or f"HTTP {reply.status}")
        return reply


class AdaxesSignIn(SignIn):
    """Adaxes legacy sign-in: a session, then a token sent as `Adm-Authorization`."""

    __slots__ = ("_patch", "_sessions")

    api = "Adaxes"

    def __init__(
        self,
        transport: Transport,
        *,
        login: Login,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(transport, login=login, clock=clock)
        self._sessions: list[Secret] = []  # every session this run opened, to end at sign-out
        self._patch = True  # False once the server showed it has no PATCH renewal

    def _headers_for(self, token: str) -> dict[str, str]:
        return {"Adm-Authorization": token}

    def secrets(self) -> Iterator[str]:
        yield from super().secrets()
        yield from (s.reveal() for s in self._sessions)

    async def _sign_in(self) -> Grant:
        login = {"username": self._login.username, "password": self._login.password.reveal()}
        reply = await self._call("POST", "/api/authSessions/create", json=login)
        session = _text(reply.body, "sessionId")
        if not reply.ok or session is None:
            raise self._refused(reply)
        self._t.learn([session])
        self._sessions.append(Secret(session))
        reply = await self._call("POST", "/api/auth", json={"sessionId": session})
        token = _text(reply.body, "token")
        if not reply.ok or token is None:
            raise self._refused(reply)
        assert isinstance(reply.body, dict)
        return self._grant_of(token, reply.body.get("expiresAtUtc"))

    async def _refresh(self, grant: Grant) -> Grant:
        if self._patch:
            reply = await self._call(
                "PATCH", "/api/auth", json={"token": grant.token.reveal()}, retries=1
            )
            if reply.ok:
                token = _text(reply.body, "token") or grant.token.reveal()
                body = reply.body
                expires = body.get("expiresAtUtc") if isinstance(body, dict) else None
                return self._grant_of(token, expires)
            if reply.status not in (401, 403):
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
                reply = await self._call(
                    "DELETE", path, params=params, retries=0, timeout_s=SIGN_OUT_TIMEOUT_S
                )
            except _NoAnswer as exc:
                log.warning("Adaxes sign-out (%s) got no answer: %s", path, exc)
                continue
            except AuthRefused as exc:  # a redirect, a suspended tenant: nothing to end
                log.warning("Adaxes sign-out (%s) refused: %s", path, exc)
                continue
            if not reply.ok and reply.status != 404:
                log.warning("Adaxes sign-out (%s) answered HTTP %d", path, reply.status)
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
        reply = await self._call("POST", "/api/2.0/authentication", json=login)
        answer = reply.body.get("response") if isinstance(reply.body, dict) else None
        token = _text(answer, "token")
        if reply.ok and token is None and isinstance(answer, dict) and (
            answer.get("tfa") or answer.get("sms")
        ):
            # DocSpace answers 200 without a token when the account needs a second factor.
            raise AuthRefused(
                f"DocSpace account {self._login.username} signs in with two-factor "
                "authentication, which bulkgroups cannot do: use an API key "
                "(token_env or token_file) instead"
            )
        if not reply.ok or token is None:
            raise self._refused(reply)
        assert isinstance(answer, dict)
        return self._grant_of(token, answer.get("expires"))


def sign_in_for(
    kind: TargetKind,
    transport: Transport,
    login: Login,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> SignIn:
    """The `Auth` that signs in with a user name and password (DocSpace: a personal access
    token; Adaxes: the legacy session and token) through `transport`, keeps it fresh, and
    signs out when its `async with` ends. It becomes the transport's `auth`."""
    signin: SignIn
    if kind is TargetKind.DOCSPACE:
        signin = DocSpaceSignIn(transport, login=login, clock=clock)
    elif kind is TargetKind.ADAXES:
        signin = AdaxesSignIn(transport, login=login, clock=clock)
    else:
        raise ValueError(f"unknown target kind {kind!r}")
    transport.auth = signin
    return signin
