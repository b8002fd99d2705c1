"""Adaxes REST API: one member per request, and an operation result to read in every answer.

HTTP 200 is not success here: the body's `resultType` is (0 done, 1 refused, 2 sent for
approval). A refusal is never judged by its wording: the group's members are read and the row
is `noop` when the membership already is what the row wants. That also settles retries: a
request whose answer was lost may have been applied, and its repeat is refused. A member named
by SID is looked for by SID: that read asks for the `objectSid` property, which the default
member list does not carry. With `adm_wait_s`, a change that outlasts it is answered 202 and
followed to its end (`running`); its result is then read like a direct answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bulkgroups.http.transport import Reply, Transport, message_of
from bulkgroups.identity import norm_id
from bulkgroups.model import Op, Result, Row, Status
from bulkgroups.targets.dn import Ident, IdKind, guid_key, ident, normalize_dn, sid_key
from bulkgroups.targets.members import MemberCache, Trace, reason
from bulkgroups.targets.operations import wait_for_operation

_MEMBERS = "/api/directoryObjects/groupMembers"

# Operation result types.
_SUCCEEDED, _FAILED, _SUSPENDED = 0, 1, 2


def _group_key(group: str) -> str:
    i = ident(group)
    return f"{i.kind}:{i.key}"


def _keys_of(item: dict[str, Any]) -> dict[IdKind, str]:
    """The comparison keys a member-list entry carries (SID only if the server gave one)."""
    props: dict[str, Any] = {}
    raw_props = item.get("properties")
    if isinstance(raw_props, dict):
        props = raw_props
    elif isinstance(raw_props, list):  # [{"propertyName": ..., "values": [...]}, ...]
        for p in raw_props:
            if isinstance(p, dict) and isinstance(p.get("propertyName"), str):
                values = p.get("values", p.get("value"))
                if isinstance(values, list):
                    values = values[0] if values else None
                props[p["propertyName"]] = values

    def pick(*names: str) -> str | None:
        for source in (item, props):
            for name in names:
                value = source.get(name)
                if isinstance(value, str) and value:
                    return value
        return None

    keys: dict[IdKind, str] = {}
    if (dn := pick("dn", "distinguishedName")) is not None:
        keys[IdKind.DN] = normalize_dn(dn)
    if (guid := pick("guid", "objectGUID", "objectGuid")) is not None:
        keys[IdKind.GUID] = guid_key(guid)
    if (sid := pick("sid", "objectSid", "objectSID")) is not None:
        keys[IdKind.SID] = sid_key(sid)
    return keys


@dataclass(slots=True)
class Entry:
    name: str  # how to name this member in a request and in `moved`: its DN, else its GUID
    keys: dict[IdKind, str]


class Members:
    """One group's direct members, compared by whichever identifier a row uses."""

    __slots__ = ("entries",)

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    @classmethod
    def parse(cls, body: Any) -> Members | None:
        """From the list-members answer (a list, or an object wrapping one); None when the
        answer is not a member list."""
        items = body
        if isinstance(body, dict):
            items = next(
                (body[k] for k in ("items", "value", "members", "response") if k in body), None
            )
        if not isinstance(items, list):
            return None
        entries: list[Entry] = []
        for item in items:
            if not isinstance(item, dict):
                return None
            keys = _keys_of(item)
            name = item.get("dn") or item.get("guid") or ""
            entries.append(Entry(str(name), keys))
        return cls(entries)

    def has(self, who: Ident) -> bool | None:
        """True/False when the list settles it; None when some entry lacks this kind of
        identifier (a SID the server did not list): then nobody may guess."""
        unsure = False
        for entry in self.entries:
            key = entry.keys.get(who.kind)
            if key is None:
                unsure = True
            elif key == who.key:
                return True
        return None if unsure else False

    def holds(self, other: Entry) -> bool:
        """Whether an entry of another group's list is among these, by any shared identifier."""
        return any(
            entry.keys.get(kind) == key
            for entry in self.entries
            for kind, key in other.keys.items()
        )

    def add(self, member: str) -> None:
        who = ident(member)
        if self.has(who) is not True:
            # Only the identifier the row used is known; other forms stay unknown (None).
            self.entries.append(Entry(member, {who.kind: who.key}))

    def discard(self, member: str) -> None:
        who = ident(member)
        self.entries = [e for e in self.entries if e.keys.get(who.kind) != who.key]


@dataclass(frozen=True, slots=True)
class Step:
    """How one change request ended."""

    status: Status  # OK, NOOP, PENDING or FAILED
    error: str | None = None


class AdaxesTarget:
    """`Target` for Adaxes: `remove`, `add`, `move` (add, then remove) and `move_all`."""

    __slots__ = ("_cache", "_poll_limit_s", "_protected", "_sid_cache", "_t", "_wait")

    def __init__(
        self,
        transport: Transport,
        *,
        precheck: bool,
        protected: frozenset[str] = frozenset(),
        adm_wait_s: int | None = None,
        poll_limit_s: float = 300.0,
    ) -> None:
        """`adm_wait_s`: sent as `Adm-Wait` on every change; `poll_limit_s`: how long a row
        waits for an operation the server answered 202 to."""
        self._t = transport
        self._protected = protected  # in norm_id form
        self._wait = {"Adm-Wait": str(adm_wait_s)} if adm_wait_s is not None else None
        self._poll_limit_s = poll_limit_s
        self._cache: MemberCache[Members] | None = None
        # Rows that name the member by SID read the group with SIDs, once, apart.
        self._sid_cache: MemberCache[Members] | None = None
        if precheck:
            self._cache = MemberCache(self._read, key=_group_key)
            self._sid_cache = MemberCache(self._read_sids, key=_group_key)

    def abandon(self) -> None:
        self._t.abandon()

    async def apply(self, row: Row) -> Result:
        trace = Trace()
        if row.op is Op.REMOVE:
            return await self._single(row, trace, add=False)
        if row.op is Op.ADD:
            return await self._single(row, trace, add=True)
        if row.op is Op.MOVE:
            return await self._move(row, trace)
        if row.op is Op.MOVE_ALL:
            return await self._move_all(row, trace)
        return trace.result(Status.FAILED, f"unsupported op {row.op!r}")

    # -- reading ----------------------------------------------------------------------------

    async def _read(self, group: str, *, sids: bool = False) -> tuple[Reply, Members | None]:
        """The group's direct members; with `sids`, each with its SID (`objectSid`)."""
        params = {"group": group}
        if sids:
            params["properties"] = "objectSid"
        reply = await self._t.send("GET", _MEMBERS, params=params)
        return reply, Members.parse(reply.body) if reply.ok else None

    async def _read_sids(self, group: str) -> tuple[Reply, Members | None]:
        return await self._read(group, sids=True)

    def _caches(self, *, sids: bool) -> tuple[MemberCache[Members], ...]:
        """The caches a read of this kind may refresh: a list with SIDs serves every row."""
        wanted = (self._cache, self._sid_cache) if sids else (self._cache,)
        return tuple(c for c in wanted if c is not None)

    async def _known(self, group: str, member: str, trace: Trace) -> Members | Result:
        """With precheck: the group's (live, cached) members, read with SIDs when `member`
        is a SID; or the row's failure."""
        cache = self._sid_cache if ident(member).kind is IdKind.SID else self._cache
        assert cache is not None
        look = await cache.get(group, trace)
        if look.members is not None:
            return look.members
        if not look.own:
            trace.share(look.reply)
        if look.reply.ok:
            return trace.result(Status.FAILED, f"unexpected answer listing group {group}")
        return trace.failed(look.reply)

    def _note(self, group: str, member: str, *, present: bool) -> None:
        # Every cache: a change the server confirmed holds whatever a list was read with.
        for cache in self._caches(sids=True):
            members = cache.peek(group)
            if members is not None:
                (members.add if present else members.discard)(member)

    # -- one change -------------------------------------------------------------------------

    async def _change(self, group: str, member: str, trace: Trace, *, add: bool) -> Step:
        if add:
            body = {"group": group, "newMember": member}
            reply = await self._t.send("POST", _MEMBERS, json=body, headers=self._wait)
        else:
            # params: aiohttp encodes them (DNs hold commas, '=', spaces, '+', '#', non-ASCII).
            query = {"group": group, "member": member}
            reply = await self._t.send("DELETE", _MEMBERS, params=query, headers=self._wait)
        trace.see(reply)
        if not reply.ok:
            return Step(Status.FAILED, reason(reply))
        if reply.status == 202:
            done = await wait_for_operation(self._t, reply, trace, limit_s=self._poll_limit_s)
            if isinstance(done, str):
                # The change may still happen: what any cache holds of the group is unsure.
                for cache in self._caches(sids=True):
                    cache.forget(group)
                return Step(Status.FAILED, done)
            result: dict[str, Any] = done
        else:
            result = reply.body if isinstance(reply.body, dict) else {}
        kind = result.get("resultType")
        if kind == _SUCCEEDED:
            self._note(group, member, present=add)
            extra = result.get("extraInfo")
            if isinstance(extra, dict) and extra.get("noChanges") is True:
                return Step(Status.NOOP)
            return Step(Status.OK)
        if kind == _SUSPENDED:
            return Step(Status.PENDING)
        if kind == _FAILED:
            return await self._settle(group, member, trace, add=add, said=message_of(result))
        return Step(Status.FAILED, f"unexpected answer (HTTP {reply.status}, no operation result)")

    async def _settle(self, group: str, member: str, trace: Trace, *, add: bool, said: str) -> Step:
        """After a refusal: read the group, and call the row done only if the membership
        already is what it asked for. Anything unsure keeps the server's refusal (a member
        named by SID, when the list came back without SIDs)."""
        who = ident(member)
        reply, members = await self._read(group, sids=who.kind is IdKind.SID)
        trace.see(reply)
        if members is None:
            return Step(Status.FAILED, said)
        for cache in self._caches(sids=who.kind is IdKind.SID):
            cache.store(group, reply, members)
        if members.has(who) is add:
            return Step(Status.NOOP)
        return Step(Status.FAILED, said)

    # -- ops --------------------------------------------------------------------------------

    async def _single(self, row: Row, trace: Trace, *, add: bool) -> Result:
        if self._cache is not None:
            members = await self._known(row.group, row.member, trace)
            if isinstance(members, Result):
                return members
            if members.has(ident(row.member)) is add:
                return trace.result(Status.NOOP)
        step = await self._change(row.group, row.member, trace, add=add)
        return trace.result(step.status, step.error)

    async def _move(self, row: Row, trace: Trace) -> Result:
        skip_add = False
        if self._cache is not None:
            src = await self._known(row.group, row.member, trace)
            if isinstance(src, Result):
                return src
            dst = await self._known(row.to_group, row.member, trace)
            if isinstance(dst, Result):
                return dst
            who = ident(row.member)
            in_src, in_dst = src.has(who), dst.has(who)
            if in_src is False and in_dst is True:
                return trace.result(Status.NOOP)
            if in_src is False and in_dst is False:
                # Adding someone who was never in the source is not a move.
                return trace.result(
                    Status.FAILED, f"member is not in group {row.group} (nor in {row.to_group})"
                )
            skip_add = in_dst is True
        # Add first, remove second: the member is never left in neither group.
        added = Step(Status.NOOP)
        if not skip_add:
            added = await self._change(row.to_group, row.member, trace, add=True)
            if added.status in (Status.FAILED, Status.PENDING):
                return trace.result(added.status, added.error)
        removed = await self._change(row.group, row.member, trace, add=False)
        if removed.status is Status.FAILED:
            return trace.result(
                Status.FAILED,
                f"in {row.to_group} but not removed from {row.group}: {removed.error}",
            )
        if removed.status is Status.PENDING:
            return trace.result(Status.PENDING)
        both_noop = added.status is Status.NOOP and removed.status is Status.NOOP
        if both_noop:
            return trace.result(Status.NOOP)
        # Known (read before) to be in the destination already: only the removal happened, and
        # only it is to be undone. An add answered "already a member" proves nothing: it may
        # be this run's own add whose answer was lost.
        return trace.result(Status.OK, left=(row.member,) if skip_add else None)

    async def _move_all(self, row: Row, trace: Trace) -> Result:
        # A fresh list, not the cache: `moved` is what `undo` will move back.
        reply, members = await self._read(row.group)
        trace.see(reply)
        if not reply.ok:
            return trace.failed(reply)
        if members is None:
            return trace.result(Status.FAILED, f"unexpected answer listing group {row.group}")
        if not members.entries:
            return trace.result(Status.NOOP, moved=(), left=())
        if self._protected and any(
            norm_id(value) in self._protected
            for entry in members.entries
            for value in (entry.name, *entry.keys.values())
        ):
            return trace.result(Status.INVALID, "protected")
        # The destination read before any change: who was there already only leaves the source
        # (an "already a member" answer could be this run's own add whose answer was lost).
        dst_reply, dst = await self._read(row.to_group)
        trace.see(dst_reply)
        if not dst_reply.ok:
            return trace.failed(dst_reply)
        if dst is None:
            return trace.result(Status.FAILED, f"unexpected answer listing group {row.to_group}")
        moved: list[str] = []
        left: list[str] = []
        errors: list[str] = []
        pending = 0
        # One member at a time within the row: concurrency comes from the other rows.
        for entry in list(members.entries):
            there = dst.holds(entry)
            added = (
                Step(Status.NOOP) if there
                else await self._change(row.to_group, entry.name, trace, add=True)
            )
            step = added
            if added.status not in (Status.FAILED, Status.PENDING):
                step = await self._change(row.group, entry.name, trace, add=False)
            if step.status is Status.FAILED:
                errors.append(f"{entry.name}: {step.error}")
            elif step.status is Status.PENDING:
                pending += 1
            else:
                (left if there else moved).append(entry.name)
        total = len(members.entries)
        if errors:
            return trace.result(
                Status.FAILED,
                f"{len(errors)} of {total} members not moved: {errors[0]}",
                moved=tuple(moved),
                left=tuple(left),
            )
        status = Status.PENDING if pending else Status.OK
        return trace.result(status, moved=tuple(moved), left=tuple(left))
