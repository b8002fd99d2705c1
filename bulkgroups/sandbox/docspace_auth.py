"""DocSpace sign-in: POST /api/2.0/authentication gives a personal access token."""

from __future__ import annotations

import orjson
from aiohttp import web

from bulkgroups.sandbox.core import CORE
from bulkgroups.sandbox.replies import ds_error, ds_ok

routes = web.RouteTableDef()
MAX_FAILURES = 5  # then the account is refused with 403 for the sandbox's life


@routes.post("/api/2.0/authentication")
async def sign_in(request: web.Request) -> web.Response:
    core = request.app[CORE]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("userName", "password")
    ):
        return ds_error(400, "userName and password are required.")
    name = body["userName"]
    key = "docspace:" + name.lower()
    if core.signin_failures.get(key, 0) >= MAX_FAILURES:
        return ds_error(403, "Login attempts limit exceeded. Try again later.")
    if core.docspace.accounts.get(name) != body["password"]:
        core.signin_failures[key] = core.signin_failures.get(key, 0) + 1
        return ds_error(401, "User authentication failed")
    core.signin_failures.pop(key, None)
    if name in core.docspace.tfa:
        # Two-factor sign-in: the first step only says a code is needed; no token.
        confirm = f"/confirm/TfaAuth?type=TfaAuth&email={name}"
        return ds_ok({"sms": False, "tfa": True, "confirmUrl": confirm})
    token, expires = core.docspace_tokens.issue(core.config.token_ttl_s)
    return ds_ok({"token": token, "expires": expires})
