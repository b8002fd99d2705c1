"""Builds what a run talks through: the endpoint (or the embedded sandbox), the HTTP session,
the pacer and the target adapter."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from bulkgroups.http.auth import auth_for
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import RetryPolicy
from bulkgroups.http.signin import Login, sign_in_for
from bulkgroups.http.transport import ANSWER_LIMIT_BYTES, READ_LIMIT_BYTES, Transport
from bulkgroups.job import Credentials, Job, JobError, load_credentials
from bulkgroups.model import TargetKind
from bulkgroups.secret import Secret
from bulkgroups.targets.adaxes import AdaxesTarget
from bulkgroups.targets.base import Adapter, Target
from bulkgroups.targets.docspace import DocSpaceTarget
from bulkgroups.targets.operations import POLL_LIMIT_FACTOR


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str
    # A fixed token, or for a username_env/password_env job the user name and password: the
    # transport then signs in on first use, renews, and signs out when `connect` ends.
    token: Secret | Login


def _sandbox_token(kind: TargetKind, state: Mapping[str, Any]) -> Secret:
    if kind is TargetKind.DOCSPACE:
        return Secret(next(iter(state.get("docspace", {}).get("api_keys", {"": []}))))
    return Secret((state.get("adaxes", {}).get("tokens") or [""])[0])


def _credential(job: Job, creds: Credentials, fallback: Secret | None) -> Secret | Login:
    if creds.username is not None and creds.password is not None:
        # No request yet: the first one signs in, so that a refusal stops the run like any
        # refused credential (exit 3).
        return Login(creds.username, creds.password)
    token = creds.token or fallback
    if token is None:
        # load_job requires a credential source for any job that is not a sandbox one.
        raise JobError(job.path, "[target]", "names no credential (token_env, token_file, "
                       "or username_env with password_env)")
    return token


@contextlib.asynccontextmanager
async def endpoint_for(job: Job, *, environ: Mapping[str, str]) -> AsyncIterator[Endpoint]:
    """The URL and credential to use; for a sandbox job, starts the embedded emulator first."""
    creds = load_credentials(job, environ=environ)
    if not job.target.sandbox:
        yield Endpoint(job.target.base_url, _credential(job, creds, None))
        return
    from bulkgroups.sandbox import Sandbox, make_state  # only sandbox jobs pay for it

    state: dict[str, Any] = (
        orjson.loads(job.target.sandbox_state.read_bytes())
        if job.target.sandbox_state is not None
        else make_state()
    )
    async with Sandbox(state) as sb:
        url = sb.base_url if job.target.kind is TargetKind.DOCSPACE else sb.adaxes_url
        fallback = _sandbox_token(job.target.kind, state)
        yield Endpoint(url, _credential(job, creds, fallback))


def _ssl(job: Job) -> ssl.SSLContext | bool:
    # Verification stays on; a private CA is added, never a way to switch checks off.
    if job.target.ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(job.target.ca_file))


# Connections beyond the concurrency: a sign-in (which takes no concurrency slot) never
# waits for a worker's connection while its timeout runs.
_SPARE_CONNECTIONS = 2


@contextlib.asynccontextmanager
async def open_transport(job: Job, endpoint: Endpoint) -> AsyncIterator[Transport]:
    """The run's one HTTP session and transport (every request, sign-in included): its pool
    sized to the concurrency so a request never waits for a connection while its timeout
    runs; no cookie jar, so a cookie a server sets (a stale `asc_auth_key`) can never
    override the credential header. A sign-in signs out before the session closes."""
    limits = job.limits
    connector = aiohttp.TCPConnector(limit=limits.concurrency + _SPARE_CONNECTIONS,
                                     ssl=_ssl(job))
    async with aiohttp.ClientSession(
        connector=connector, json_serialize_bytes=orjson.dumps, raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        token = endpoint.token
        transport = Transport(
            session,
            base_url=endpoint.base_url,
            auth=auth_for(job.target.kind, token if isinstance(token, Secret) else Secret("")),
            pacer=Pacer(rate=limits.rate, concurrency=limits.concurrency),
            policy=RetryPolicy(max_retries=limits.max_retries),
            timeout_s=limits.timeout_s,
            # DocSpace answers every member change with the whole group (all its members):
            # those answers get the read limit, not the 1 MiB of a small answer.
            answer_limit_bytes=(
                READ_LIMIT_BYTES if job.target.kind is TargetKind.DOCSPACE
                else ANSWER_LIMIT_BYTES
            ),
        )
        if isinstance(token, Secret):
            yield transport
            return
        async with sign_in_for(job.target.kind, transport, token):
            yield transport


@contextlib.asynccontextmanager
async def connect(job: Job, endpoint: Endpoint) -> AsyncIterator[Adapter]:
    """The target adapter for the run, over `open_transport`; `plan` reads through it too."""
    limits = job.limits
    async with open_transport(job, endpoint) as transport:
        yield make_target(job.target.kind, transport, precheck=limits.precheck,
                          protected=job.safety.protected, batch_size=limits.batch_size,
                          adm_wait_s=job.target.adm_wait_s,
                          poll_limit_s=limits.timeout_s * POLL_LIMIT_FACTOR)


def requests_sent(target: Target) -> int:
    """Requests the target's transport put on the wire so far, sign-in included (for the
    summary: a run stopped before any row finished still sent these)."""
    t = getattr(target, "_t", None)
    return t.requests_sent if isinstance(t, Transport) else 0


# Rows a run may hold at once: with batching, enough to fill `concurrency` requests of
# `batch_size` members each; bounded, since each waiting row holds a little memory.
MAX_WORKERS = 2000


def worker_count(job: Job) -> int:
    limits = job.limits
    if job.target.kind is TargetKind.DOCSPACE and limits.batch_size > 1:
        return min(MAX_WORKERS, limits.concurrency * limits.batch_size)
    return limits.concurrency


def make_target(
    kind: TargetKind,
    transport: Transport,
    *,
    precheck: bool,
    protected: frozenset[str] = frozenset(),
    batch_size: int = 1,
    adm_wait_s: int | None = None,
    poll_limit_s: float = 300.0,
) -> Adapter:
    """`protected`: ids a `move_all` must not carry along (the row ends `invalid`).
    `batch_size`: members a DocSpace list request may carry (Adaxes has no list call).
    `adm_wait_s`, `poll_limit_s`: Adaxes asynchronous execution (see `running`)."""
    if kind is TargetKind.DOCSPACE:
        return DocSpaceTarget(
            transport, precheck=precheck, protected=protected, batch_size=batch_size
        )
    if kind is TargetKind.ADAXES:
        return AdaxesTarget(transport, precheck=precheck, protected=protected,
                            adm_wait_s=adm_wait_s, poll_limit_s=poll_limit_s)
    raise ValueError(f"unknown target kind {kind!r}")
