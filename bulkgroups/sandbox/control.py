"""/_sandbox/* control routes, for a sandbox in another process (no auth: loopback only)."""

from __future__ import annotations

import orjson
from aiohttp import web

from bulkgroups.sandbox.config import TENANT_MODES
from bulkgroups.sandbox.core import CORE
from bulkgroups.sandbox.replies import json_response
from bulkgroups.sandbox.state import dump_state

routes = web.RouteTableDef()


@routes.get("/_sandbox/log")
async def get_log(request: web.Request) -> web.Response:
    """The log as a JSON list; `?since=N` skips the first N entries."""
    core = request.app[CORE]
    try:
        since = max(0, int(request.query.get("since", "0")))
    except ValueError:
        return json_response({"message": "since must be an integer"}, 400)
    return json_response([entry.to_json() for entry in core.log[since:]])


@routes.delete("/_sandbox/log")
async def clear_log(request: web.Request) -> web.Response:
    request.app[CORE].log.clear()
    return web.Response(status=204)


@routes.get("/_sandbox/state")
async def get_state(request: web.Request) -> web.Response:
    core = request.app[CORE]
    return json_response(dump_state(core.docspace, core.adaxes))


@routes.post("/_sandbox/inject")
async def inject(request: web.Request) -> web.Response:
    """Body: {"status", "count"?, "retry_after_s"?, "api"?, "after_apply"?}, as
    Sandbox.inject takes them."""
    core = request.app[CORE]
    try:
        body = orjson.loads(await request.read())
        if not isinstance(body, dict):
            raise TypeError("the body must be a JSON object")
        after = body.get("retry_after_s")
        after_apply = body.get("after_apply", False)
        if not isinstance(after_apply, bool):
            raise TypeError("after_apply must be true or false")
        core.faults.inject(
            status=int(body["status"]),
            count=int(body.get("count", 1)),
            retry_after_s=None if after is None else float(after),
            api=body.get("api"),
            after_apply=after_apply,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return json_response({"message": f"bad inject request: {exc}"}, 400)
    return json_response({"pending": sum(i.remaining for i in core.faults.injections)})


@routes.post("/_sandbox/expire-tokens")
async def expire_tokens(request: web.Request) -> web.Response:
    """Expire every signed-in token; `?sessions=true` also expires Adaxes sessions."""
    core = request.app[CORE]
    sessions = request.query.get("sessions", "false").lower() == "true"
    return json_response({"expired": core.expire_tokens(sessions=sessions)})


@routes.get("/_sandbox/tenant")
async def get_tenant(request: web.Request) -> web.Response:
    return json_response({"mode": request.app[CORE].config.tenant})


@routes.post("/_sandbox/tenant")
async def set_tenant(request: web.Request) -> web.Response:
    """Body: {"mode": "active" | "suspended" | "unpaid" | "transferring"}."""
    core = request.app[CORE]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    mode = body.get("mode") if isinstance(body, dict) else None
    if mode not in TENANT_MODES:
        return json_response({"message": f"mode must be one of {sorted(TENANT_MODES)}"}, 400)
    core.config.tenant = mode
    return json_response({"mode": mode})
