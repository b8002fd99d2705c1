"""DocSpace sign-in: POST /api/2.0/authentication gives a personal access token."""

from __future__ import annotations

import orjson
from aiohttp import web

from bulkgroups.sandbox.core import CORE
from bulkgroups.sandbox.replies import ds_error, ds_ok

routes = web.RouteTableDef()


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
    if core.docspace.accounts.get(body["userName"]) != body["password"]:
        return ds_error(401, "User authentication failed")
    token, expires = core.docspace_tokens.issue(core.config.token_ttl_s)
    return ds_ok({"token": token, "expires": expires}, status=201)
