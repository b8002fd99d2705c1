"""One HTTP request as the adapters (and the sign-in) see it: paced, read within a limit,
scrubbed, and retried as `policy.decide` says. This module sends; it never judges a status.

Never followed: a redirect (a 3xx is an answer, judged by the policy), a cookie (the session
has no jar, see `targets.connect`). Never read whole: an answer beyond its limit. Never
shown: a credential (every server text goes through the run's `Scrubber`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bulkgroups.http.auth import Auth, TlsRefused
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import (
    MAX_RETRY_AFTER_S,
    BodyKind,
    Done,
    Fail,
    PauseAll,
    Refuse,
    Renew,
    Retry,
    RetryPolicy,
    Seen,
    decide,
)
from bulkgroups.http.quota import parse_quota
from bulkgroups.http.scrub import Scrubber

__all__ = ["MAX_RETRY_AFTER_S", "BodyKind", "Reply", "Transport", "message_of"]

MiB = 1024 * 1024
# What is read of an answer at most. A GET may be a group with all its members (a group of
# 50,000 members is about 10 MB as DocSpace sends it); anything else is a few KB.
READ_LIMIT_BYTES = 16 * MiB
ANSWER_LIMIT_BYTES = 1 * MiB
_CHUNK = 64 * 1024

# What a request can raise that is worth sending again: the connection, not the request.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    asyncio.TimeoutError,
)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Reply:
    """The last attempt's answer. `error` is set when it is not a usable answer (and is the
    row's `error`, scrubbed); `body_kind` says what the body was, so an adapter can refuse
    an HTML page or an empty 200; `uncertain` says an earlier attempt of a write got no
    answer (or a 504), so the change may have been applied whatever `status` says."""

    status: int | None  # None: no HTTP answer to the last attempt
    body: Any  # decoded JSON, or None
    attempts: int  # requests sent for this call (1: no retry)
    error: str | None = None
    body_kind: BodyKind = BodyKind.NONE
    uncertain: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class _Got:
    status: int | None
    headers: Mapping[str, str]
    body: Any
    kind: BodyKind
    error: str | None


_NO_HEADERS: Mapping[str, str] = {}


def _describe(exc: BaseException, timeout_s: float, *, headers_seen: bool) -> str:
    # Only the kind of failure: aiohttp's texts can carry the URL, and with it a token.
    if isinstance(exc, asyncio.TimeoutError):
        if headers_seen:
            return f"the answer stalled after its headers (not whole within {timeout_s:g} s)"
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off before its end"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return f"connection error: {type(exc).__name__}"


def sniff(raw: bytes, content_type: str) -> BodyKind:
    """What a body is, from its first bytes (and its declared type for HTML)."""
    head = raw.lstrip()[:1]
    if not head:
        return BodyKind.EMPTY
    if head in (b"{", b"["):
        return BodyKind.JSON
    if head == b"<" or "html" in content_type.lower():
        return BodyKind.HTML
    return BodyKind.NOT_JSON


def _decode(raw: bytes, kind: BodyKind) -> tuple[Any, BodyKind]:
    if kind in (BodyKind.EMPTY, BodyKind.HTML):
        return None, kind
    try:
        return orjson.loads(raw), BodyKind.JSON
    except orjson.JSONDecodeError:
        return None, BodyKind.NOT_JSON  # truncated JSON, or text


async def _read_within(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` (the rest is never read: the
    connection is closed when the response is let go)."""
    if resp.content_length is not None and resp.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class Transport:
    __slots__ = (
        "_answer_limit",
        "_auth",
        "_base",
        "_base_host",
        "_pacer",
        "_policy",
        "_read_limit",
        "_rng",
        "_session",
        "_timeout_s",
        "answered",
        "answers_received",
        "requests_sent",
        "scrubber",
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
        read_limit_bytes: int = READ_LIMIT_BYTES,
        answer_limit_bytes: int = ANSWER_LIMIT_BYTES,
    ) -> None:
        """`read_limit_bytes` caps the answer to a GET (a group with its members);
        `answer_limit_bytes` any other answer."""
        self._session = session
        # aiohttp (3.10+) silently sends a GET, PUT or DELETE a second time when the server
        # closes the connection without answering. That hidden repeat skips the pacer (no rate
        # slot, no pause), is missing from `attempts`, and adds one send per retry on top of
        # the policy's budget; retrying is this class's job, so switch it off. The attribute is
        # private (aiohttp's own test client sets it the same way), hence the guard.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._base = base_url.rstrip("/")
        self._base_host = urlsplit(self._base).hostname or ""
        self.scrubber = Scrubber()
        self._auth = auth
        self.auth = auth
        self._pacer = pacer
        self._policy = policy
        self._timeout_s = timeout_s
        self._rng = rng or random.Random()
        self._read_limit = read_limit_bytes
        self._answer_limit = answer_limit_bytes
        # Set once any request is answered 2xx: a 403 (or a redirect, or an empty 404)
        # before that is about every request, after it only about that one.
        self.answered = False
        # Requests put on the wire (every attempt, sign-in included), for the summary.
        self.requests_sent = 0
        self.answers_received = 0  # of those, the ones answered (status and body, or its limit)

    @property
    def auth(self) -> Auth:
        return self._auth

    @auth.setter
    def auth(self, auth: Auth) -> None:
        """A sign-in is attached after the transport it sends through exists."""
        self._auth = auth
        self.learn(auth.secrets())

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    def abandon(self) -> None:
        """The stop contract: no new attempt starts; every pause, pacer wait and backoff
        ends at once with `Abandoned`. A request already on the wire may finish."""
        self._pacer.abandon()

    def learn(self, secrets: Iterable[str]) -> None:
        """Secrets to scrub from every server text from now on."""
        for s in secrets:
            self.scrubber.add(s)

    def scrub(self, text: str) -> str:
        return self.scrubber.scrub(text)

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        decode: bool = True,
        credentials: bool = True,
        retries: int | None = None,
        timeout_s: float | None = None,
    ) -> Reply:
        """Send until the policy says done; raises an `AuthRefused` (subclass) when the run
        must stop, `Abandoned` when it is stopping. `decode=False` leaves a 2xx body
        undecoded (its kind is still sniffed; error bodies are always decoded).
        `credentials=False`: a sign-in request — no credential headers, no concurrency slot
        (the workers that hold them wait for it), and its 401/403 is the caller's to judge.
        `retries`, `timeout_s`: this call's own budget instead of the run's."""
        policy = self._policy
        if retries is not None:
            policy = RetryPolicy(max_retries=retries, base_s=policy.base_s, cap_s=policy.cap_s,
                                 limited_budget_s=policy.limited_budget_s)
        wait_s = self._timeout_s if timeout_s is None else timeout_s
        attempts = tries = 0
        limited_s = 0.0
        renewed = uncertain = False
        while True:
            self._pacer.check()
            attempts += 1
            got, sent_auth = await self._attempt(
                method, path, params=params, json=json, headers=headers, decode=decode,
                credentials=credentials, wait_s=wait_s,
            )
            tries += got.status != 429  # 429s spend the wait budget, not the retries
            uncertain = uncertain or (
                method in _WRITES and (got.status is None or got.status == 504)
            )
            seen = Seen(
                status=got.status, headers=got.headers, kind=got.kind,
                message=message_of(got.body), tries=tries, limited_s=limited_s,
                error=got.error, first=not self.answered, credentials=credentials,
                renewed=renewed, base_host=self._base_host,
            )
            decision = decide(seen, policy)
            if isinstance(decision, Renew):
                if await self.auth.renew(sent_auth):
                    renewed = True
                    attempts -= 1  # a sign-in is not a try at the row
                    tries -= 1
                    continue
                decision = decide(dataclasses.replace(seen, renewed=True), policy)
            if isinstance(decision, PauseAll):
                # Every worker waits in the pacer; this request then goes again.
                limited_s += self._pause(decision.seconds)
                continue
            if isinstance(decision, Retry):
                after = decision.after_s
                await self._pacer.sleep(
                    policy.backoff_s(tries - 1, rng=self._rng) if after is None else after
                )
                continue
            assert not isinstance(decision, Renew)  # renewed=True: decide renews no more
            return self._finish(decision, got, attempts, uncertain, credentials=credentials)

    def _finish(
        self, decision: Done | Fail | Refuse, got: _Got, attempts: int, uncertain: bool, *,
        credentials: bool,
    ) -> Reply:
        if isinstance(decision, Refuse):
            raise decision.error
        if isinstance(decision, Fail):
            return Reply(got.status, got.body, attempts, decision.message, got.kind, uncertain)
        # A sign-in's success says nothing of what the credential may do: a 403 on the
        # first data requests still stops the run.
        if credentials and got.status is not None and 200 <= got.status < 300:
            self.answered = True
        error = None
        if got.status is not None and got.status >= 300 and got.kind is not BodyKind.JSON:
            error = f"HTTP {got.status} ({_shown(got.kind)})"
        return Reply(got.status, got.body, attempts, error, got.kind, uncertain)

    def _pause(self, seconds: float | None) -> float:
        if seconds is None:
            return self._pacer.window_full()
        self._pacer.limited()
        self._pacer.pause_for(seconds)
        return seconds

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        decode: bool,
        credentials: bool,
        wait_s: float,
    ) -> tuple[_Got, dict[str, str]]:
        auth_headers: dict[str, str] = {}
        if credentials:
            async with self._pacer:
                # Taken once the pacer lets the request go: a pause (Retry-After) may
                # outlast a signed-in token, and its renewal happens here.
                auth_headers = await self.auth.headers()
                got = await self._exchange(method, path, params, json,
                                           {**auth_headers, **(headers or {})}, decode, wait_s,
                                           credentials)
        else:
            await self._pacer.turn(first=True)
            got = await self._exchange(method, path, params, json, dict(headers or {}), decode,
                                       wait_s, credentials)
        return got, auth_headers

    async def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json: Any,
        headers: dict[str, str],
        decode: bool,
        wait_s: float,
        credentials: bool,
    ) -> _Got:
        limit = self._read_limit if method == "GET" else self._answer_limit
        headers_seen = False
        self.requests_sent += 1
        try:
            async with self._session.request(
                method, self._base + path, params=params, json=json, headers=headers,
                timeout=aiohttp.ClientTimeout(total=wait_s), allow_redirects=False,
            ) as resp:
                headers_seen = True
                raw = await _read_within(resp, limit)
                status, got_headers = resp.status, resp.headers
                if status == 429 or (status == 503 and "Retry-After" in got_headers):
                    pass  # the policy decides how to slow down
                elif status < 500:
                    self._pacer.answered(parse_quota(got_headers))
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TlsRefused(
                f"the TLS certificate of {exc.host} is not trusted "
                f"({type(exc.certificate_error).__name__}): if it is signed by a private "
                "CA, name that CA's certificate in [target] ca_file"
            ) from None
        except RETRYABLE_ERRORS as exc:
            error = _describe(exc, wait_s, headers_seen=headers_seen)
            return _Got(None, _NO_HEADERS, None, BodyKind.NONE, error)
        self.answers_received += 1
        if raw is None:
            return _Got(status, got_headers, None, BodyKind.TOO_LARGE,
                        f"HTTP {status}: the answer is larger than {limit // MiB} MiB: not read")
        return self._judge_body(status, got_headers, raw, decode, credentials)

    def _judge_body(
        self, status: int, headers: Mapping[str, str], raw: bytes, decode: bool,
        credentials: bool,
    ) -> _Got:
        success = 200 <= status < 300
        # A sign-in's success carries the very secrets it is for: it is not scrubbed.
        if credentials or not success:
            raw = self.scrubber.scrub_bytes(raw)
        kind = sniff(raw, headers.get("Content-Type", ""))
        body: Any = None
        if decode or not success:
            body, kind = _decode(raw, kind)
            if body is not None and not success:
                body = self.scrubber.scrub_json(body)
            elif body is not None and credentials:
                # A success's data (ids, names) stays as it is; only its messages (an
                # Adaxes operation's exception and inner messages) are scrubbed.
                body = _scrub_messages(body, self.scrubber)
        return _Got(status, headers, body, kind, None)


_MESSAGE_KEYS = frozenset({"message", "text"})


def _scrub_messages(body: Any, scrubber: Scrubber, depth: int = 0) -> Any:
    if depth > 8 or not isinstance(body, dict | list):
        return body
    if isinstance(body, list):
        return [_scrub_messages(v, scrubber, depth + 1) for v in body]
    out: dict[Any, Any] = {}
    for key, value in body.items():
        if key in _MESSAGE_KEYS and isinstance(value, str):
            out[key] = scrubber.scrub(value)
        elif key in ("exception", "error", "innerMessages", "innerError"):
            out[key] = _scrub_messages(value, scrubber, depth + 1)
        else:
            out[key] = value
    return out


def _shown(kind: BodyKind) -> str:
    return "empty body" if kind is BodyKind.EMPTY else kind.value


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
