"""Adaxes routes: /restApi/api/directoryObjects/groupMembers and runningOperations."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from bulkgroups.sandbox.adaxes_state import AdObject
from bulkgroups.sandbox.core import CORE, Core
from bulkgroups.sandbox.operations import apply_change
from bulkgroups.sandbox.replies import ax_bad_request, ax_error, json_response

routes = web.RouteTableDef()
MEMBERS = "/restApi/api/directoryObjects/groupMembers"

# userAccountControl flags: NORMAL_ACCOUNT, and ACCOUNTDISABLE on top of it.
_UAC_NORMAL, _UAC_DISABLED = 512, 2
# LDAP properties the member list can add to each object, by case-folded name: the name as
# answered, and the values (a list: Adaxes answers every property as an array), or None when
# the object has no such property. Names not here are ignored, as a directory ignores an
# attribute an object does not have. accountDisabled is Adaxes's virtual property.
_PROPERTIES: dict[str, tuple[str, Callable[[AdObject], list[Any] | None]]] = {
    "objectsid": ("objectSid", lambda obj: [obj.sid]),
    "objectguid": ("objectGUID", lambda obj: [obj.guid]),
    "distinguishedname": ("distinguishedName", lambda obj: [obj.dn]),
    "accountdisabled": (
        "accountDisabled",
        lambda obj: [obj.disabled] if obj.type == "user" else None,
    ),
    "useraccountcontrol": (
        "userAccountControl",
        lambda obj: (
            [_UAC_NORMAL | (_UAC_DISABLED if obj.disabled else 0)] if obj.type == "user" else None
        ),
    ),
}
Property = tuple[str, Callable[[AdObject], list[Any] | None]]


def _properties(values: list[str]) -> list[Property]:
    """The known properties a `properties` query asks for (comma-separated, any case)."""
    wanted: dict[str, Property] = {}
    for value in values:
        for name in value.split(","):
            known = _PROPERTIES.get(name.strip().casefold())
            if known is not None:
                wanted.setdefault(known[0], known)
    return list(wanted.values())


def _required(values: dict[str, Any]) -> dict[str, list[str]]:
    return {
        key: [f"The {key} field is required."]
        for key, value in values.items()
        if not isinstance(value, str) or not value.strip()
    }


def _find(core: Core, ident: str, what: str) -> AdObject | web.Response:
    obj = core.adaxes.resolve(ident)
    if obj is None:
        return ax_error(404, f"The {what} '{ident}' was not found.", "notFound")
    if what == "group" and obj.type != "group":
        return ax_bad_request({"group": [f"The object '{ident}' is not a group."]})
    return obj


async def _change(request: web.Request, group_id: str, member_id: str, add: bool) -> web.Response:
    core = request.app[CORE]
    group = _find(core, group_id, "group")
    if isinstance(group, web.Response):
        return group
    member = _find(core, member_id, "member")
    if isinstance(member, web.Response):
        return member
    config = core.config

    def apply() -> dict[str, Any]:
        return apply_change(group, member, add, config.adaxes_no_changes_flag)

    duration = config.adaxes_operation_s
    if duration > 0:
        try:
            wait: float | None = float(request.headers["Adm-Wait"])
        except (KeyError, ValueError):
            wait = None
        if wait is not None and duration > wait:
            return json_response({"id": core.operations.start(duration, apply)}, 202)
        await asyncio.sleep(duration)
    return json_response(apply())


@routes.delete(MEMBERS)
async def remove_member(request: web.Request) -> web.Response:
    query = request.query
    group, member = query.get("group"), query.get("member")
    missing = _required({"group": group, "member": member})
    if missing or group is None or member is None:
        return ax_bad_request(missing)
    return await _change(request, group, member, add=False)


@routes.post(MEMBERS)
async def add_member(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return ax_bad_request({"body": ["The request body is not valid JSON."]})
    if not isinstance(body, dict):
        return ax_bad_request({"body": ["The request body must be a JSON object."]})
    group, member = body.get("group"), body.get("newMember")
    missing = _required({"group": group, "newMember": member})
    if missing or not isinstance(group, str) or not isinstance(member, str):
        return ax_bad_request(missing)
    return await _change(request, group, member, add=True)


@routes.get(MEMBERS)
async def list_members(request: web.Request) -> web.Response:
    core = request.app[CORE]
    query = request.query
    ident = query.get("group")
    if ident is None or not ident.strip():
        return ax_bad_request(_required({"group": ident}))
    default = core.config.adaxes_default_size_limit
    try:
        limit = int(query["sizeLimit"]) if "sizeLimit" in query else (default or 0)
    except ValueError:
        limit = -1
    if limit < 0:
        return ax_bad_request({"sizeLimit": ["The sizeLimit must be a non-negative integer."]})
    group = _find(core, ident, "group")
    if isinstance(group, web.Response):
        return group
    indirect = query.get("includeIndirect", "false").lower() == "true"
    members = core.adaxes.members_of(group, indirect)
    if limit:
        members = members[:limit]
    extra = _properties(query.getall("properties", []))
    if not extra:
        return json_response([obj.dto for obj in members])
    return json_response([obj.dto | {"properties": _values(obj, extra)} for obj in members])


def _values(obj: AdObject, wanted: list[Property]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, read in wanted:
        values = read(obj)
        if values is not None:
            out[name] = values
    return out


@routes.get("/restApi/api/runningOperations/{id}")
async def running_operation(request: web.Request) -> web.Response:
    core = request.app[CORE]
    status = core.operations.status(request.match_info["id"])
    if status is None:
        return ax_error(404, "The operation was not found.", "notFound")
    return json_response(status)
