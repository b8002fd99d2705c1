"""DocSpace group routes: /api/2.0/group..."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from bulkgroups.sandbox.core import CORE, Core
from bulkgroups.sandbox.docspace_dto import group_dto, group_summary_dto
from bulkgroups.sandbox.docspace_state import DsGroup, norm_id
from bulkgroups.sandbox.replies import ds_error, ds_ok, ds_validation

routes = web.RouteTableDef()
PAGE_MAX = 100  # ApiContext.MaxCount: `count` outside 1..100 fails validation
# System.Text.Json reads a Guid only in its 36-character hyphenated form.
_JSON_GUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_NULL_DEREF = "Object reference not set to an instance of an object."


def _bad_json(path: str, target: str) -> web.Response:
    message = f"The JSON value could not be converted to {target}. Path: {path} | LineNumber: 0."
    return ds_validation({path: [message], "inDto": ["The inDto field is required."]})


def _group(core: Core, raw: str) -> tuple[str, DsGroup] | web.Response:
    gid = norm_id(raw)
    group = core.docspace.groups.get(gid) if gid is not None else None
    if gid is None or group is None:
        return ds_error(404, "The group could not be found.")
    return gid, group


async def _lists(request: web.Request, *keys: str) -> dict[str, list[str] | None] | web.Response:
    """The id lists of a JSON body (None where absent), or the model-binding 400: one id that
    is not a GUID fails the whole request before anything is applied."""
    try:
        body: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _bad_json("$", "the request model")
    if not isinstance(body, dict):
        return _bad_json("$", "the request model")
    out: dict[str, list[str] | None] = {}
    for key in keys:
        value = body.get(key)
        if value is None:
            out[key] = None
            continue
        if not isinstance(value, list):
            return _bad_json(f"$.{key}", "System.Collections.Generic.IEnumerable`1[System.Guid]")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not _JSON_GUID.fullmatch(item):
                return _bad_json(f"$.{key}[{i}]", "System.Guid")
        out[key] = [item.lower() for item in value]
    return out


async def _members_call(
    request: web.Request,
) -> tuple[Core, tuple[str, DsGroup], list[str] | None] | web.Response:
    """The group of the path and the `members` list of the body, or the error answer."""
    core = request.app[CORE]
    body = await _lists(request, "members")
    if isinstance(body, web.Response):
        return body
    found = _group(core, request.match_info["id"])
    if isinstance(found, web.Response):
        return found
    return core, found, body["members"]


def _answer(core: Core, found: tuple[str, DsGroup]) -> web.Response:
    return ds_ok(group_dto(core.docspace, *found, members=True))


@routes.delete("/api/2.0/group/{id}/members")
async def remove_members(request: web.Request) -> web.Response:
    call = await _members_call(request)
    if isinstance(call, web.Response):
        return call
    core, found, members = call
    core.docspace.remove(found[1], members or [])  # `Members?.Members ?? []`: {} is a no-op
    return _answer(core, found)


@routes.put("/api/2.0/group/{id}/members")
async def add_members(request: web.Request) -> web.Response:
    call = await _members_call(request)
    if isinstance(call, web.Response):
        return call
    core, found, members = call
    if members is None:  # the server walks `Members.Members` unguarded
        return ds_error(500, _NULL_DEREF)
    core.docspace.add(found[1], members)
    return _answer(core, found)


@routes.post("/api/2.0/group/{id}/members")
async def replace_members(request: web.Request) -> web.Response:
    call = await _members_call(request)
    if isinstance(call, web.Response):
        return call
    core, found, members = call
    if members is None:
        return ds_error(500, _NULL_DEREF)
    if not core.docspace.any_addable(members):
        return ds_error(400, "Value does not fall within the expected range. (Parameter 'Members')")
    state = core.docspace
    state.remove(found[1], state.listed(found[1]))
    state.add(found[1], members)
    return _answer(core, found)


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
    return _answer(core, dest)


@routes.put("/api/2.0/group/{id}")
async def update_group(request: web.Request) -> web.Response:
    core = request.app[CORE]
    body = await _lists(request, "membersToAdd", "membersToRemove")
    if isinstance(body, web.Response):
        return body
    found = _group(core, request.match_info["id"])
    if isinstance(found, web.Response):
        return found
    core.docspace.add(found[1], body["membersToAdd"] or [])
    core.docspace.remove(found[1], body["membersToRemove"] or [])
    return _answer(core, found)


@routes.get("/api/2.0/group/user/{userId}")
async def user_groups(request: web.Request) -> web.Response:
    core = request.app[CORE]
    uid = norm_id(request.match_info["userId"])
    if uid is None:  # the route's {userid:guid} constraint does not match
        return ds_error(404, "Not Found")
    return ds_ok([group_summary_dto(gid, g) for gid, g in core.docspace.groups_of(uid)])


@routes.get("/api/2.0/group/{id}")
async def read_group(request: web.Request) -> web.Response:
    core = request.app[CORE]
    found = _group(core, request.match_info["id"])
    if isinstance(found, web.Response):
        return found
    members = request.query.get("includeMembers", "true").lower() != "false"
    return ds_ok(group_dto(core.docspace, *found, members=members))


def paging(query: Any) -> tuple[int, int] | web.Response:
    """`count` (1..100, default 100) and `startIndex` (default 0) as the server validates them."""
    try:
        count = int(query.get("count", PAGE_MAX))
    except ValueError:
        return ds_validation({"count": [f"The value '{query['count']}' is not valid."]})
    try:
        start = int(query.get("startIndex", 0))
    except ValueError:
        return ds_validation({"startIndex": [f"The value '{query['startIndex']}' is not valid."]})
    if not 1 <= count <= PAGE_MAX:
        return ds_validation({"Count": [f"The field Count must be between 1 and {PAGE_MAX}."]})
    return count, max(start, 0)


@routes.get("/api/2.0/group")
async def list_groups(request: web.Request) -> web.Response:
    core = request.app[CORE]
    page = paging(request.query)
    if isinstance(page, web.Response):
        return page
    count, start = page
    groups = core.docspace.groups
    items = list(groups.items())[start : start + count]
    dtos = [group_dto(core.docspace, gid, g, members=False) for gid, g in items]
    return ds_ok(dtos, total=len(groups))
