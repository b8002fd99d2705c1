"""Adaxes legacy sign-in: authSessions/create, auth (token), renewal and sign-out."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bulkgroups.sandbox.auth import AX_UNAUTHENTICATED
from bulkgroups.sandbox.core import CORE
from bulkgroups.sandbox.replies import ax_bad_request, ax_error, json_response

routes = web.RouteTableDef()
MAX_ATTEMPTS = 3


async def _body(request: web.Request, *keys: str) -> dict[str, str] | web.Response:
    try:
        body: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return ax_bad_request({"body": ["The request body is not valid JSON."]})
    if not isinstance(body, dict):
        return ax_bad_request({"body": ["The request body must be a JSON object."]})
    missing = {k: [f"The {k} field is required."] for k in keys if not isinstance(body.get(k), str)}
    if missing:
        return ax_bad_request(missing)
    return {k: body[k] for k in keys}


@routes.post("/restApi/api/authSessions/create")
async def create_session(request: web.Request) -> web.Response:
    core = request.app[CORE]
    body = await _body(request, "username", "password")
    if isinstance(body, web.Response):
        return body
    user = body["username"]
    if core.adaxes.accounts.get(user) != body["password"]:
        failures = core.signin_failures[user.lower()] = (
            core.signin_failures.get(user.lower(), 0) + 1
        )
        inner = {
            "message": "The user name or password is incorrect.",
            "code": "invalidCredentials",
            "attemptsLeft": max(0, MAX_ATTEMPTS - failures),
        }
        return ax_error(403, "Authentication failed.", "authenticationFailed", innerError=inner)
    core.signin_failures.pop(user.lower(), None)
    session, expires = core.adaxes_sessions.issue(core.config.session_ttl_s)
    # No second factor and no forced password change on the sandbox's accounts.
    return json_response(
        {
            "sessionId": session,
            "totpState": None,
            "changePasswordReason": None,
            "expiresAtUtc": expires,
        }
    )


@routes.post("/restApi/api/auth")
async def create_token(request: web.Request) -> web.Response:
    core = request.app[CORE]
    body = await _body(request, "sessionId")
    if isinstance(body, web.Response):
        return body
    if not core.adaxes_sessions.valid(body["sessionId"]):
        return ax_error(
            401, "The authentication session is either expired or invalid.", "unauthenticated"
        )
    token, expires = core.adaxes_tokens.issue(core.config.token_ttl_s)
    return json_response({"token": token, "expiresAtUtc": expires})


@routes.patch("/restApi/api/auth")
async def renew_token(request: web.Request) -> web.Response:
    core = request.app[CORE]
    body = await _body(request, "token")
    if isinstance(body, web.Response):
        return body
    expires = core.adaxes_tokens.renew(body["token"], core.config.token_ttl_s)
    if expires is None:
        return ax_error(401, AX_UNAUTHENTICATED, "unauthenticated")
    return json_response({"token": body["token"], "expiresAtUtc": expires})


@routes.delete("/restApi/api/auth")
async def sign_out(request: web.Request) -> web.Response:
    core = request.app[CORE]
    token = request.query.get("token")
    if not token:
        return ax_bad_request({"token": ["The token field is required."]})
    core.adaxes_tokens.revoke(token)
    return web.Response(status=204)


@routes.delete("/restApi/api/authSessions")
async def end_session(request: web.Request) -> web.Response:
    core = request.app[CORE]
    session = request.query.get("id")
    if not session:
        return ax_bad_request({"id": ["The id field is required."]})
    core.adaxes_sessions.revoke(session)
    return web.Response(status=204)
