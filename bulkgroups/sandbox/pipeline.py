"""The middleware every API request goes through: log, tenant, inject, auth, limits, faults."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from bulkgroups.sandbox.auth import check_adaxes, check_docspace, credential
from bulkgroups.sandbox.config import TENANT_MODES
from bulkgroups.sandbox.core import CORE, Core
from bulkgroups.sandbox.faults import Injection, retry_after_value
from bulkgroups.sandbox.limits import Refusal
from bulkgroups.sandbox.log import LogEntry, token_label
from bulkgroups.sandbox.replies import Dropped, api_error, empty, nginx_page

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def classify(path: str) -> str:
    """Which API a path belongs to: "docspace", "adaxes" or "auth" (sign-in of either)."""
    if path.startswith("/restApi/"):
        if path == "/restApi/api/auth" or path.startswith("/restApi/api/authSessions"):
            return "auth"
        return "adaxes"
    if path.startswith("/api/2.0/authentication"):
        return "auth"
    return "docspace"


@web.middleware
async def pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith("/_sandbox/"):
        return await handler(request)
    core = request.app[CORE]
    start = time.monotonic()
    api = classify(path)
    adaxes = path.startswith("/restApi/")
    cred = credential(request, adaxes)
    write = request.method not in _READS
    in_flight = core.writes_in_flight.get(cred, 0) + write
    if write:
        core.writes_in_flight[cred] = in_flight
    core.in_flight += 1
    status = 500
    try:
        try:
            response = await _serve(core, request, handler, api, adaxes, cred, write)
        except web.HTTPException as exc:  # no route, wrong method, ...
            response = api_error(adaxes, exc.status, exc.reason)
        status = 0 if isinstance(response, Dropped) else response.status
        return response
    except asyncio.CancelledError:  # the server is shutting down under this request
        status = 0
        raise
    finally:
        core.in_flight -= 1
        if write:
            core.writes_in_flight[cred] -= 1
        core.record(
            LogEntry(
                start=start,
                end=time.monotonic(),
                method=request.method,
                path=path,
                query=request.rel_url.raw_query_string,
                status=status,
                api=api,
                writes_in_flight=in_flight,
                token=token_label(cred),
                # Not for a request cut short (status 0): its body may never come, and a
                # server shutting down must not wait for it.
                members=await _named_members(request) if write and status else (),
            )
        )


async def _named_members(request: web.Request) -> tuple[str, ...]:
    named = request.rel_url.query.getall("member", [])
    try:
        body = orjson.loads(await request.read()) if request.body_exists else None
    except (orjson.JSONDecodeError, ConnectionError):
        body = None
    if isinstance(body, dict):
        for key in ("members", "membersToAdd", "membersToRemove"):
            value = body.get(key)
            if isinstance(value, list):
                named += [v for v in value if isinstance(v, str)]
        if isinstance(body.get("newMember"), str):
            named.append(body["newMember"])
    return tuple(named)


async def _serve(
    core: Core,
    request: web.Request,
    handler: Handler,
    api: str,
    adaxes: bool,
    cred: str,
    write: bool,
) -> web.StreamResponse:
    if not adaxes:
        tenant = TENANT_MODES.get(core.config.tenant, 0)
        if tenant:  # ahead of auth and routing: the same empty answer on every path
            await request.read()
            return empty(tenant)
    injection = core.faults.take(api) if core.faults.injections else None
    if injection is None:
        return await _handle(core, request, handler, api, adaxes, cred, write, faults=True)
    if injection.after_apply:
        # A lost answer: handled in full (no random fault in the way), whatever it says lost.
        # No route or a wrong method raises: nothing was applied, and nothing is answered.
        with contextlib.suppress(web.HTTPException):
            await _handle(core, request, handler, api, adaxes, cred, write, faults=False)
        await request.read()
        return Dropped() if injection.status == 0 else proxy_error(adaxes, injection.status)
    if injection.status == 0:
        await request.read()  # so the close is a clean FIN, not a reset over unread data
    return _injected(injection, adaxes)


def proxy_error(adaxes: bool, status: int) -> web.Response:
    """What the front proxy answers for a failed or slow upstream: nginx's HTML page before
    DocSpace; before Adaxes (IIS, whose page is unconfirmed) the API's own error shape."""
    if adaxes:
        return api_error(True, status, f"Injected fault: {status}")
    return nginx_page(status)


async def _handle(
    core: Core,
    request: web.Request,
    handler: Handler,
    api: str,
    adaxes: bool,
    cred: str,
    write: bool,
    *,
    faults: bool,
) -> web.StreamResponse:
    """Sign-in, credentials, DocSpace's limits, random faults (if `faults`), the route."""
    if api == "auth":
        return await handler(request)
    denied = check_adaxes(core, cred) if adaxes else check_docspace(core, request, cred, write)
    if denied is not None:
        return denied
    ticket = None
    if not adaxes:
        admitted = core.limiter.acquire(core.config.limits, cred, request.method, time.monotonic())
        if isinstance(admitted, Refusal):
            return empty(429, admitted.headers)
        ticket = admitted
    try:
        draw = core.faults.draw(core.config.faults) if faults else None
        if draw is None:
            return await handler(request)
        if draw.delay_s > 0:
            await asyncio.sleep(draw.delay_s)
        if draw.before == "drop":
            await request.read()
            return Dropped()
        if draw.before == "503":
            await request.read()
            if not adaxes:
                return nginx_page(503)
            headers = {"Retry-After": retry_after_value(core.config.faults.retry_after_s)}
            return api_error(True, 503, "Injected fault: 503", headers)
        if draw.before == "429":
            # Not the limiter's own answer: the vendor's page documents a 429 with Retry-After.
            headers = {"Retry-After": retry_after_value(core.config.faults.retry_after_s)}
            return api_error(adaxes, 429, "Injected fault: 429", headers)
        response = await handler(request)
        if draw.drop_after:
            return Dropped()
        if draw.timeout_after:
            return proxy_error(adaxes, 504)
        return response
    finally:
        if ticket is not None:
            core.limiter.release(ticket)


def _injected(injection: Injection, adaxes: bool) -> web.StreamResponse:
    if injection.status == 0:
        return Dropped()
    if injection.status in (502, 503, 504) and not adaxes:
        return nginx_page(injection.status)
    headers = None
    if injection.retry_after_s is not None:
        headers = {"Retry-After": retry_after_value(injection.retry_after_s)}
    return api_error(adaxes, injection.status, f"Injected answer: {injection.status}", headers)
