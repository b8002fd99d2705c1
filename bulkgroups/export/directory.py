"""Reading the directory for an export: groups and their members, GETs only, through the
run's transport (paced, retried, refused credentials raise AuthRefused).

DocSpace hides terminated accounts from a group's member list although they stay members
until removed (API.md), so they are found through the people search, which joins the
membership links itself: `GET /api/2.0/people/filter?groupId=G&employeeStatus=2`
(DocSpace-server products/ASC.People/Server/Api/UserController.cs:1178; the parameters in
ApiModels/RequestDto/SimpleByFilterRequestDto.cs:45-73; DbUserService.cs:797 and :862-888).
Guests are a type, not a status: `employeeType=2` (EmployeeType.Guest). Both lists, like the
group list, are paged at most 100 a page (ApiContext.MaxCount).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bulkgroups.export.select import MemberKind, Selection, matches
from bulkgroups.http.transport import Reply, Transport
from bulkgroups.rows.readers import InputError
from bulkgroups.targets.docspace import member_ids
from bulkgroups.targets.members import reason

PAGE = 100  # DocSpace's largest page: count outside 1..100 is a 400
_GROUP = "/api/2.0/group"
_PEOPLE = "/api/2.0/people/filter"
_AX_MEMBERS = "/api/directoryObjects/groupMembers"
_STATUS_TERMINATED = "2"  # EmployeeStatus.Terminated
_TYPE_GUEST = "2"  # EmployeeType.Guest
# Always asked for: a protected or excluded SID must match the member it names, and the
# vendor's reference leaves open whether naming `properties` keeps the default set (dn,
# guid), so the DN and GUID are asked for as properties too.
_ID_PROPERTIES = ("objectSid", "objectGUID", "distinguishedName")


class ReadFailed(InputError):
    """A read that the export cannot go on without (the group list): for a selecting job,
    its input cannot be read at all."""


@dataclass(frozen=True, slots=True)
class Found:
    member: str  # the id a row names: DocSpace user UUID; Adaxes DN (else GUID)
    ids: tuple[str, ...]  # every identifier the list gave, for protected and excluded ids
    kind: str  # DocSpace: a MemberKind; Adaxes: the objectType ("user", "group", ...)


@dataclass(slots=True)
class GroupRead:
    group: str
    name: str | None = None
    members: list[Found] = field(default_factory=list)  # those the selection takes
    seen: int = 0  # members read, before the filters
    error: str | None = None  # the group could not be read: nothing is exported for it


def _why(reply: Reply, what: str) -> str:
    if reply.status == 404:
        return f"{what}: not found (404)"
    if reply.ok:
        return f"{what}: unexpected answer"
    return f"{what}: {reason(reply)}"


def _items(body: Any) -> list[Any] | None:
    value = body.get("response") if isinstance(body, dict) else None
    return value if isinstance(value, list) else None


async def _paged(t: Transport, path: str, params: Mapping[str, str], what: str
                 ) -> list[dict[str, Any]] | str:
    """Every item of a paged DocSpace list, or why not. Stops at `total`, at an empty page,
    or at a page that brings nothing new (a server that ignores startIndex)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    start = 0
    while True:
        query = {**params, "count": str(PAGE), "startIndex": str(start)}
        reply = await t.send("GET", path, params=query)
        items = _items(reply.body) if reply.ok else None
        if items is None:
            return _why(reply, what)
        fresh = [i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)
                 and i["id"].casefold() not in seen]
        for item in fresh:
            seen.add(item["id"].casefold())
        out += fresh
        start += len(items)
        total = reply.body.get("total") if isinstance(reply.body, dict) else None
        if not items or not fresh or (isinstance(total, int) and start >= total):
            return out


async def docspace_groups(t: Transport) -> list[tuple[str, str | None]]:
    """Every group of the portal as (id, name), read page by page."""
    items = await _paged(t, _GROUP, {}, "the group list")
    if isinstance(items, str):
        raise ReadFailed(f"cannot list the groups: {items}")
    return [(i["id"], i.get("name") if isinstance(i.get("name"), str) else None)
            for i in items]


async def _people(t: Transport, group: str, extra: Mapping[str, str], what: str
                  ) -> set[str] | str:
    items = await _paged(t, _PEOPLE, {"groupId": group, **extra}, what)
    if isinstance(items, str):
        return items
    return {i["id"].casefold() for i in items}


async def read_docspace(t: Transport, group: str, sel: Selection) -> GroupRead:
    kinds = sel.kinds
    out = GroupRead(group)
    listed_needed = bool(kinds & {MemberKind.USER, MemberKind.GUEST})
    # The group is always read, with its listed members: an unknown group must say so, not
    # export nobody, and the counts say how many members were read.
    reply = await t.send("GET", f"{_GROUP}/{quote(group.strip(), safe='')}")
    body = reply.body.get("response") if reply.ok and isinstance(reply.body, dict) else None
    if not isinstance(body, dict):
        out.error = _why(reply, f"group {group}")
        return out
    out.name = body.get("name") if isinstance(body.get("name"), str) else None
    listed = member_ids(reply.body)
    if listed is None:
        out.error = f"group {group}: the answer has no member list"
        return out
    guests: set[str] = set()
    if listed_needed:
        found = await _people(t, group, {"employeeType": _TYPE_GUEST}, f"guests of {group}")
        if isinstance(found, str):
            out.error = found
            return out
        guests = found
    terminated: set[str] = set()
    if MemberKind.TERMINATED in kinds:
        found = await _people(t, group, {"employeeStatus": _STATUS_TERMINATED},
                              f"terminated members of {group}")
        if isinstance(found, str):
            out.error = found
            return out
        terminated = found
    listed_keys = {m.casefold() for m in listed}
    out.seen = len(listed_keys | terminated)
    taken: set[str] = set()
    for m in listed:
        key = m.casefold()
        kind = MemberKind.GUEST if key in guests else MemberKind.USER
        if key in terminated:  # listed is active or pending; the status search wins
            kind = MemberKind.TERMINATED
        if kind in kinds and key not in taken:
            taken.add(key)
            out.members.append(Found(m, (m,), kind.value))
    if MemberKind.TERMINATED in kinds:
        for key in sorted(terminated - taken):
            taken.add(key)
            out.members.append(Found(key, (key,), MemberKind.TERMINATED.value))
    return out


def _props(item: Mapping[str, Any]) -> dict[str, list[Any]]:
    """`properties` as an object of arrays (API.md); single values and the
    [{propertyName, values}] form some versions answer are read too."""
    raw = item.get("properties")
    out: dict[str, list[Any]] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            out[str(k)] = v if isinstance(v, list) else [v]
    elif isinstance(raw, list):
        for p in raw:
            if isinstance(p, dict) and isinstance(p.get("propertyName"), str):
                v = p.get("values", p.get("value"))
                out[p["propertyName"]] = v if isinstance(v, list) else [v]
    return out


def props_values(props: Mapping[str, list[Any]], name: str) -> list[Any]:
    """A property's values, its name compared without case (LDAP names are)."""
    folded = name.casefold()
    return next((v for k, v in props.items() if k.casefold() == folded), [])


def _prop(props: Mapping[str, list[Any]], name: str) -> Any:
    values = props_values(props, name)
    return values[0] if values else None


def _first(*values: Any) -> str | None:
    return next((v for v in values if isinstance(v, str) and v), None)


def _list(body: Any) -> list[Any] | None:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for k in ("items", "value", "members", "response"):
            if isinstance(body.get(k), list):
                return list(body[k])
    return None


async def read_adaxes(t: Transport, group: str, sel: Selection) -> GroupRead:
    out = GroupRead(group)
    wanted = list(_ID_PROPERTIES) + [
        p for p in sel.properties() if p.casefold() not in {i.casefold() for i in _ID_PROPERTIES}
    ]
    params = {"group": group, "properties": ",".join(wanted)}
    if sel.indirect:
        params["includeIndirect"] = "true"
    reply = await t.send("GET", _AX_MEMBERS, params=params)
    items = _list(reply.body) if reply.ok else None
    if items is None:
        out.error = _why(reply, f"group {group}")
        return out
    taken: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        out.seen += 1
        props = _props(item)
        dn = _first(item.get("dn"), _prop(props, "distinguishedName"))
        guid = _first(item.get("guid"), _prop(props, "objectGUID"))
        name = dn or guid
        if not name:
            continue
        kind = str(item.get("objectType") or "")
        if sel.indirect and kind.casefold() == "group":
            # Walking nested groups takes their members; the groups themselves are not
            # what an add of "everyone under this group" means.
            continue
        if not matches(sel.where, props):
            continue
        ids = [v for v in (dn, guid) if v]
        ids += [s for s in props_values(props, "objectSid") if isinstance(s, str) and s]
        key = name.casefold()
        if key in taken:
            continue
        taken.add(key)
        out.members.append(Found(name, tuple(ids), kind))
    return out
