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

from bulkgroups.http.auth import Auth, auth_for
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import RetryPolicy
from bulkgroups.http.signin import Login, sign_in_for
from bulkgroups.http.transport import Transport
from bulkgroups.job import Credentials, Job, JobError, load_credentials
from bulkgroups.model import TargetKind
from bulkgroups.secret import Secret
from bulkgroups.targets.adaxes import AdaxesTarget
from bulkgroups.targets.base import Target
from bulkgroups.targets.docspace import DocSpaceTarget
from bulkgroups.targets.operations import POLL_LIMIT_FACTOR


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str
    # A fixed token, or for a username_env/password_env job the sign-in itself: an Auth
    # that signs in on first use, renews, and signs out when `endpoint_for` ends.
    token: Secret | Auth


def _sandbox_token(kind: TargetKind, state: Mapping[str, Any]) -> Secret:
    if kind is TargetKind.DOCSPACE:
        return Secret(next(iter(state.get("docspace", {}).get("api_keys", {"": []}))))
    return Secret((state.get("adaxes", {}).get("tokens") or [""])[0])


@contextlib.asynccontextmanager
async def _credential(
    job: Job, base_url: str, creds: Credentials, fallback: Secret | None
) -> AsyncIterator[Secret | Auth]:
    if creds.username is not None and creds.password is not None:
        # No request yet: the first one signs in, so that a refusal stops the run like any
        # refused credential (exit 3); leaving this block signs out.
        async with sign_in_for(
            job.target.kind,
            base_url=base_url,
            login=Login(creds.username, creds.password),
            ssl=_ssl(job),
            timeout_s=job.limits.timeout_s,
        ) as signin:
            yield signin
        return
    token = creds.token or fallback
    if token is None:
        # load_job requires a credential source for any job that is not a sandbox one.
        raise JobError(job.path, "[target]", "names no credential (token_env, token_file, "
                       "or username_env with password_env)")
    yield token


@contextlib.asynccontextmanager
async def endpoint_for(job: Job, *, environ: Mapping[str, str]) -> AsyncIterator[Endpoint]:
    """The URL and credential to use; for a sandbox job, starts the embedded emulator first.
    A sign-in ends (signs out) when this block does."""
    creds = load_credentials(job, environ=environ)
    if not job.target.sandbox:
        async with _credential(job, job.target.base_url, creds, None) as token:
            yield Endpoint(job.target.base_url, token)
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
        async with _credential(job, url, creds, fallback) as token:
            yield Endpoint(url, token)


def _ssl(job: Job) -> ssl.SSLContext | bool:
    # Verification stays on; a private CA is added, never a way to switch checks off.
    if job.target.ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(job.target.ca_file))


@contextlib.asynccontextmanager
async def open_transport(job: Job, endpoint: Endpoint) -> AsyncIterator[Transport]:
    """One session for the whole run, its pool sized to the concurrency so a request never
    waits for a connection while its timeout runs; paced and retried as the job says. Reads
    that are not a row's (export) go through this too."""
    limits = job.limits
    connector = aiohttp.TCPConnector(limit=limits.concurrency, ssl=_ssl(job))
    async with aiohttp.ClientSession(
        connector=connector, json_serialize_bytes=orjson.dumps, raise_for_status=False
    ) as session:
        yield Transport(
            session,
            base_url=endpoint.base_url,
            auth=auth_for(job.target.kind, endpoint.token),
            pacer=Pacer(rate=limits.rate, concurrency=limits.concurrency),
            policy=RetryPolicy(max_retries=limits.max_retries),
            timeout_s=limits.timeout_s,
        )


@contextlib.asynccontextmanager
async def connect(job: Job, endpoint: Endpoint) -> AsyncIterator[Target]:
    """The job's target adapter over `open_transport`."""
    limits = job.limits
    async with open_transport(job, endpoint) as transport:
        yield make_target(job.target.kind, transport, precheck=limits.precheck,
                          protected=job.safety.protected, batch_size=limits.batch_size,
                          adm_wait_s=job.target.adm_wait_s,
                          poll_limit_s=limits.timeout_s * POLL_LIMIT_FACTOR)


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
) -> Target:
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
