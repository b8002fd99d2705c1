"""DocSpace routes: /api/2.0/group... and /api/2.0/authentication."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bulkgroups.sandbox.core import CORE, Core
from bulkgroups.sandbox.docspace_state import DsGroup, norm_id
from bulkgroups.sandbox.replies import ds_error, ds_ok

routes = web.RouteTableDef()
PAGE_MAX = 100


def group_dto(core: Core, gid: str, group: DsGroup, members: bool = True) -> dict[str, Any]:
    dto: dict[str, Any] = {"id": gid, "name": group.name, "manager": None}
    if members:
        name = core.docspace.display_name
        dto["members"] = [{"id": uid, "displayName": name(uid)} for uid in group.members]
    dto["isLDAP"] = False
    return dto


def _group(core: Core, raw: str) -> tuple[str, DsGroup] | web.Response:
    gid = norm_id(raw)
    group = core.docspace.groups.get(gid) if gid is not None else None
    if gid is None or group is None:
        return ds_error(404, "The group could not be found.")
    return gid, group


async def _lists(
    request: web.Request, required: str | None, *optional: str
) -> dict[str, list[str]] | web.Response:
    """The id lists of a JSON body; 400 when the body or a list is malformed."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return ds_error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return ds_error(400, "The request body must be a JSON object.")
    if required is not None and required not in body:
        return ds_error(400, f"Value cannot be null. (Parameter '{required}')")
    out: dict[str, list[str]] = {}
    for key in ((required,) if required else ()) + optional:
        value = body.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return ds_error(400, f"'{key}' must be a list of user ids.")
        out[key] = value
    return out


async def _members_call(
    request: web.Request,
) -> tuple[Core, tuple[str, DsGroup], list[str]] | web.Response:
    """The group of the path and the `members` list of the body, or the error answer."""
    core = request.app[CORE]
    found = _group(core, request.match_info["id"])
    if isinstance(found, web.Response):
        return found
    body = await _lists(request, "members")
    if isinstance(body, web.Response):
        return body
    return core, found, body["members"]


@routes.delete("/api/2.0/group/{id}/members")
async def remove_members(request: web.Request) -> web.Response:
    call = await _members_call(request)
    if isinstance(call, web.Response):
        return call
    core, found, members = call
    core.docspace.remove(found[1], members)
    return ds_ok(group_dto(core, *found))


@routes.put("/api/2.0/group/{id}/members")
async def add_members(request: web.Request) -> web.Response:
    call = await _members_call(request)
    if isinstance(call, web.Response):
        return call
    core, found, members = call
    core.docspace.add(found[1], members)
    return ds_ok(group_dto(core, *found))


@routes.post("/api/2.0/group/{id}/members")
async def replace_members(request: web.Request) -> web.Response:
    call = await _members_call(request)
    if isinstance(call, web.Response):
        return call
    core, found, members = call
    if not core.docspace.any_addable(members):
        return ds_error(400, "None of the given user ids is valid.")
    found[1].members.clear()
    core.docspace.add(found[1], members)
    return ds_ok(group_dto(core, *found))


@routes.put("/api/2.0/group/{fromId}/members/{toId}")
async def move_all(request: web.Request) -> web.Response:
    core = request.app[CORE]
    source = _group(core, request.match_info["fromId"])
    if isinstance(source, web.Response):
        return source
    dest = _group(core, request.match_info["toId"])
    if isinstance(dest, web.Response):
        return dest
    core.docspace.move_all(source[1], dest[1])
    return ds_ok(group_dto(core, *dest))


@routes.put("/api/2.0/group/{id}")
async def update_group(request: web.Request) -> web.Response:
    core = request.app[CORE]
    found = _group(core, request.match_info["id"])
    if isinstance(found, web.Response):
        return found
    body = await _lists(request, None, "membersToAdd", "membersToRemove")
    if isinstance(body, web.Response):
        return body
    core.docspace.add(found[1], body["membersToAdd"])
    core.docspace.remove(found[1], body["membersToRemove"])
    return ds_ok(group_dto(core, *found))


@routes.get("/api/2.0/group/user/{userId}")
async def user_groups(request: web.Request) -> web.Response:
    core = request.app[CORE]
    uid = norm_id(request.match_info["userId"])
    if uid is None:
        return ds_error(404, "Not Found")
    groups = core.docspace.groups_of(uid)
    return ds_ok([group_dto(core, gid, g, members=False) for gid, g in groups])


@routes.get("/api/2.0/group/{id}")
async def read_group(request: web.Request) -> web.Response:
    core = request.app[CORE]
    found = _group(core, request.match_info["id"])
    if isinstance(found, web.Response):
        return found
    members = request.query.get("includeMembers", "true").lower() != "false"
    return ds_ok(group_dto(core, *found, members=members))


@routes.get("/api/2.0/group")
async def list_groups(request: web.Request) -> web.Response:
    core = request.app[CORE]
    try:
        count = min(int(request.query.get("count", PAGE_MAX)), PAGE_MAX)
        start = int(request.query.get("startIndex", 0))
    except ValueError:
        return ds_error(400, "count and startIndex must be integers.")
    if count < 0 or start < 0:
        return ds_error(400, "count and startIndex must not be negative.")
    groups = core.docspace.groups
    page = list(groups.items())[start : start + count]
    return ds_ok([group_dto(core, gid, g, members=False) for gid, g in page], total=len(groups))
