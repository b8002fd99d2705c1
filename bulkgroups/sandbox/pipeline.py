"""The middleware every API request goes through: log, inject, auth, limits, faults."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from bulkgroups.sandbox.auth import check_adaxes, check_docspace, credential
from bulkgroups.sandbox.core import CORE, Core
from bulkgroups.sandbox.faults import Injection, retry_after_value
from bulkgroups.sandbox.limits import Refusal
from bulkgroups.sandbox.log import LogEntry, token_label
from bulkgroups.sandbox.replies import Dropped, api_error

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
            )
        )


async def _serve(
    core: Core,
    request: web.Request,
    handler: Handler,
    api: str,
    adaxes: bool,
    cred: str,
    write: bool,
) -> web.StreamResponse:
    injection = core.faults.take(api) if core.faults.injections else None
    if injection is None:
        return await _handle(core, request, handler, api, adaxes, cred, write, faults=True)
    if injection.after_apply:
        # A lost answer: handled in full (no random fault in the way), whatever it says dropped.
        # No route or a wrong method raises: nothing was applied, and nothing is answered.
        with contextlib.suppress(web.HTTPException):
            await _handle(core, request, handler, api, adaxes, cred, write, faults=False)
        await request.read()
        return Dropped()
    if injection.status == 0:
        await request.read()  # so the close is a clean FIN, not a reset over unread data
    return _injected(injection, adaxes)


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
    denied = check_adaxes(core, cred) if adaxes else check_docspace(core, cred, write)
    if denied is not None:
        return denied
    ticket = None
    if not adaxes:
        admitted = core.limiter.acquire(core.config.limits, cred, request.method, time.monotonic())
        if isinstance(admitted, Refusal):
            after = admitted.retry_after
            headers = {"Retry-After": str(after)} if after is not None else None
            return api_error(False, 429, admitted.message, headers)
        ticket = admitted
    try:
        draw = core.faults.draw(core.config.faults) if faults else None
        if draw is None:
            response = await handler(request)
        else:
            if draw.delay_s > 0:
                await asyncio.sleep(draw.delay_s)
            if draw.before == "drop":
                await request.read()
                return Dropped()
            if draw.before is not None:
                code = int(draw.before)
                headers = {"Retry-After": retry_after_value(core.config.faults.retry_after_s)}
                return api_error(adaxes, code, f"Injected fault: {code}", headers)
            response = await handler(request)
            if draw.drop_after:
                return Dropped()
        if ticket is not None and ticket.headers is not None and response.status < 300:
            response.headers.update(ticket.headers)
        return response
    finally:
        if ticket is not None:
            core.limiter.release(ticket)


def _injected(injection: Injection, adaxes: bool) -> web.StreamResponse:
    if injection.status == 0:
        return Dropped()
    headers = None
    if injection.retry_after_s is not None:
        headers = {"Retry-After": retry_after_value(injection.retry_after_s)}
    return api_error(adaxes, injection.status, f"Injected answer: {injection.status}", headers)
