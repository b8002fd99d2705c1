"""One HTTP request as the adapters see it: paced, retried, with the answer decoded."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from bulkgroups.http.auth import Auth, AuthRefused, TlsRefused
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import MAX_RETRY_AFTER_S, RetryPolicy, parse_retry_after
from bulkgroups.http.quota import parse_quota

# What a request can raise that is worth sending again: the connection, not the request.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int | None  # None: no HTTP answer to the last attempt
    body: Any  # decoded JSON, or None
    attempts: int
    error: str | None = None  # why there was no answer, when status is None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _describe(exc: BaseException, timeout_s: float) -> str:
    # aiohttp's messages can carry the request URL; keep to the kind of failure.
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return f"connection error: {type(exc).__name__}"


class Transport:
    __slots__ = (
        "_auth",
        "_base",
        "_pacer",
        "_policy",
        "_rng",
        "_session",
        "_timeout",
        "_timeout_s",
        "abandoned",
        "answered",
    )

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        auth: Auth,
        pacer: Pacer,
        policy: RetryPolicy,
        timeout_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        # aiohttp (3.10+) silently sends a GET, PUT or DELETE a second time when the server
        # closes the connection without answering. That hidden repeat skips the pacer (no rate
        # slot, no pause), is missing from `attempts`, and adds one send per retry on top of
        # the policy's budget; retrying is this class's job, so switch it off. The attribute is
        # private (aiohttp's own test client sets it the same way), hence the guard.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._base = base_url.rstrip("/")
        self._auth = auth
        self._pacer = pacer
        self._policy = policy
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._rng = rng or random.Random()
        # Set once any request is answered 2xx: a 403 before that means the key lacks a
        # scope for everything, after it only that one request was refused.
        self.answered = False
        self.abandoned = False

    def abandon(self) -> None:
        # Stub of the stop contract (see Target.abandon); the transport honours it in full later.
        self.abandoned = True

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        decode: bool = True,
    ) -> Reply:
        """Send until answered for good or retries run out; raises AuthRefused on 401 (no
        renewal possible) or on a 403 before any request succeeded. `decode=False` leaves a
        2xx body undecoded (error bodies are always read, for their message)."""
        url = self._base + path
        attempts = 0
        renewed = False
        while True:
            attempts += 1
            auth_headers: dict[str, str] = {}
            status: int | None = None
            body: Any = None
            error: str | None = None
            retry_after: float | None = None
            try:
                async with self._pacer:
                    # Taken once the pacer lets the request go: a pause (Retry-After) may
                    # outlast a signed-in token, and its renewal happens here.
                    auth_headers = await self._auth.headers()
                    sent = {**auth_headers, **headers} if headers else auth_headers
                    resp_cm = self._session.request(
                        method, url, params=params, json=json, headers=sent,
                        timeout=self._timeout,
                    )
                    async with resp_cm as resp:
                        status = resp.status
                        raw = await resp.read()
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        if status == 429 or (status == 503 and retry_after is not None):
                            self._pacer.limited()
                        elif status < 500:
                            self._pacer.answered(parse_quota(resp.headers))
            except aiohttp.ClientConnectorCertificateError as exc:
                raise TlsRefused(
                    f"the TLS certificate of {exc.host} is not trusted "
                    f"({type(exc.certificate_error).__name__}): if it is signed by a private "
                    "CA, name that CA's certificate in [target] ca_file"
                ) from None
            except RETRYABLE_ERRORS as exc:
                error = _describe(exc, self._timeout_s)
            else:
                if decode or not 200 <= status < 300:
                    body = _decode(raw)
            if status is not None and 200 <= status < 300:
                self.answered = True
                return Reply(status, body, attempts)
            if status == 401:
                if not renewed and await self._auth.renew(auth_headers):
                    renewed = True
                    attempts -= 1  # a sign-in is not a try at the row
                    continue
                raise AuthRefused(f"the target refused the credentials (401): {message_of(body)}")
            if status == 403 and not self.answered:
                raise AuthRefused(
                    f"the target refused access (403) on the first requests: {message_of(body)}"
                )
            if retry_after is not None and status in (429, 503):
                if retry_after > MAX_RETRY_AFTER_S:
                    return Reply(status, body, attempts, f"rate limited for {retry_after:.0f} s")
                self._pacer.pause_for(retry_after)
            if not self._policy.should_retry(attempts=attempts, status=status):
                return Reply(status, body, attempts, error)
            if retry_after is None:
                await asyncio.sleep(self._policy.backoff_s(attempts - 1, rng=self._rng))


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def message_of(body: Any) -> str:
    """The server's own words from either API's error shape, or a placeholder."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])  # DocSpace envelope
        exc = body.get("exception")
        if isinstance(exc, dict) and isinstance(exc.get("message"), str):
            return str(exc["message"])  # Adaxes operation result
        if isinstance(body.get("message"), str):
            return str(body["message"])  # Adaxes HTTP error
    return "no message"
