"""Adaxes REST API: one member per request, and an operation result to read in every answer.

HTTP 200 is not success here: the body's `resultType` is (0 done, 1 refused, 2 sent for
approval). A refusal is never judged by its wording: the group's members are read and the row
is `noop` when the membership already is what the row wants. That also settles retries: a
request whose answer was lost may have been applied, and its repeat is refused. Every member
list is read with the `objectSid` property (values come as arrays, `{"objectSid": ["S-1-…"]}`;
older versions sent plain strings: both are read), so a member named by SID is found by SID,
and with a `sizeLimit` far above any group, so that the 1000-member default of older versions
cannot make a member look absent. With `adm_wait_s`, a change that outlasts it is answered 202 and
followed to its end (`running`); its result is then read like a direct answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bulkgroups.http.transport import Reply, Transport, message_of
from bulkgroups.identity import Ident, IdKind, ident, norm_id
from bulkgroups.model import Op, Result, Row, Status
from bulkgroups.planning.snapshot import SnapMember
from bulkgroups.targets.decision import (
    Decision,
    Kind,
    Lookup,
    OnRead,
    Unreadable,
    judge,
    unchecked,
)
from bulkgroups.targets.members import AnswerCheck, MemberCache, Trace, groups_of, reason
from bulkgroups.targets.operations import wait_for_operation

_MEMBERS = "/api/directoryObjects/groupMembers"
# Asked for on every member list; a list that comes back this long may have been cut, and
# then absence proves nothing (`Members.whole`).
SIZE_LIMIT = 1_000_000

# Operation result types.
_SUCCEEDED, _FAILED, _SUSPENDED = 0, 1, 2

SID_UNKNOWN = "the member list did not carry this identifier (a SID): the run decides"
BUSINESS_RULES = (
    "Adaxes business rules (approval, denial) do not show in a read: may end pending or failed"
)


def _first_string(value: Any) -> str | None:
    """A property's value: Adaxes answers arrays (`["S-1-…"]`); other versions a string."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v), None)
    return value if isinstance(value, str) and value else None


def _props(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    props: dict[str, Any] = {}
    if isinstance(raw, list):  # [{"propertyName": ..., "values": [...]}, ...]
        for p in raw:
            if isinstance(p, dict) and isinstance(p.get("propertyName"), str):
                props[p["propertyName"]] = p.get("values", p.get("value"))
    return props


_NAMES = {
    IdKind.DN: ("dn", "distinguishedName"),
    IdKind.GUID: ("guid", "objectGUID", "objectGuid"),
    IdKind.SID: ("sid", "objectSid", "objectSID"),
}


def _keys_of(item: dict[str, Any]) -> dict[IdKind, str]:
    """The comparison keys a member-list entry carries (SID only if the server gave one)."""
    props = _props(item.get("properties"))
    keys: dict[IdKind, str] = {}
    for kind, names in _NAMES.items():
        for source in (item, props):
            value = next((v for v in map(_first_string, map(source.get, names)) if v), None)
            if value is not None:
                keys[kind] = norm_id(value)
                break
    return keys


@dataclass(slots=True)
class Entry:
    name: str  # how to name this member in a request and in `moved`: its DN, else its GUID
    keys: dict[IdKind, str]


class Members:
    """One group's direct members, compared by whichever identifier a row uses."""

    __slots__ = ("entries", "whole")
    # A DN says what the group is; the read gives no other name.
    name: str | None = None

    def __init__(self, entries: list[Entry], *, whole: bool = True) -> None:
        self.entries = entries
        self.whole = whole  # False: the list may have been cut at SIZE_LIMIT

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
            name = item.get("dn") or item.get("guid") or ""
            entries.append(Entry(str(name), _keys_of(item)))
        return cls(entries, whole=len(entries) < SIZE_LIMIT)

    def has(self, member: str | Ident) -> bool | None:
        """True/False when the list settles it; None when some entry lacks this kind of
        identifier (a SID the server did not list), or the list may be cut."""
        who = member if isinstance(member, Ident) else ident(member)
        unsure = not self.whole
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

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def snapshot(self) -> list[SnapMember]:
        return [SnapMember(e.name, tuple(v for v in e.keys.values() if v and v != e.name))
                for e in self.entries]

    def carries(self, protected: frozenset[str]) -> bool:
        return any(
            norm_id(value) in protected
            for entry in self.entries
            for value in (entry.name, *entry.keys.values())
            if value
        )

    def add(self, member: str) -> None:
        who = ident(member)
        if self.has(who) is not True:
            # Only the identifier the row used is known; other forms stay unknown (None).
            self.entries.append(Entry(member, {who.kind: who.key}))

    def discard(self, member: str) -> None:
        who = ident(member)
        self.entries = [e for e in self.entries if e.keys.get(who.kind) != who.key]


def decide(row: Row, members_of: Lookup, protected: frozenset[str] = frozenset()) -> Decision:
    """What a row needs, from the groups as read (pure). A change may still end pending or
    failed by a business rule the read cannot see: every change says so (`unsure`)."""
    decision = judge(row, members_of, protected=protected, unsure=SID_UNKNOWN)
    if decision.kind is Kind.CHANGE and decision.unsure is None:
        return Decision(decision.kind, decision.reason, decision.precondition,
                        BUSINESS_RULES, decision.add)
    return decision


@dataclass(frozen=True, slots=True)
class Step:
    """How one change request ended."""

    status: Status  # OK, NOOP, PENDING or FAILED
    error: str | None = None


class AdaxesTarget:
    """`Target` for Adaxes: `remove`, `add`, `move` (add, then remove) and `move_all`."""

    __slots__ = ("_cache", "_check", "_poll_limit_s", "_protected", "_t", "_wait", "on_read")

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
        self._protected = frozenset(norm_id(p) for p in protected)
        self._wait = {"Adm-Wait": str(adm_wait_s)} if adm_wait_s is not None else None
        self._poll_limit_s = poll_limit_s
        self._cache: MemberCache[Members] | None = (
            MemberCache(self._read, key=norm_id) if precheck else None
        )
        self._check = AnswerCheck()
        self.on_read: OnRead | None = None

    def abandon(self) -> None:
        self._t.abandon()

    def decide(self, row: Row, members_of: Lookup) -> Decision:
        decision = decide(row, members_of, self._protected)
        if self._cache is None:  # what a run without precheck will meet
            # A refusal is settled from a read: already-done rows still end noop.
            return unchecked(decision, row, already_is_ok=False)
        return decision

    async def membership(self, group: str) -> Members | Unreadable:
        """A group's direct members as `plan` sees them: the read a precheck makes."""
        reply, members = await self._read(group)
        if members is not None:
            return members
        return Unreadable(self._unreadable(group, reply))

    async def apply(self, row: Row) -> Result:
        trace = Trace()
        if row.op is Op.MOVE_ALL:
            return await self._move_all(row, trace)
        decision = await self._decided(row, trace)
        if isinstance(decision, Result):
            return decision
        settled = trace.settled(row, decision)
        if settled is not None:
            return settled
        if row.op is Op.REMOVE:
            return await self._single(row, trace, add=False)
        if row.op is Op.ADD:
            return await self._single(row, trace, add=True)
        if row.op is Op.MOVE:
            return await self._move(row, decision, trace)
        return trace.result(Status.FAILED, f"unsupported op {row.op!r}")

    # -- reading ----------------------------------------------------------------------------

    async def _read(self, group: str) -> tuple[Reply, Members | None]:
        """The group's direct members, each with its SID, the whole list."""
        params = {"group": group, "properties": "objectSid", "sizeLimit": str(SIZE_LIMIT)}
        reply = await self._t.send("GET", _MEMBERS, params=params)
        members = Members.parse(reply.body) if reply.ok else None
        if members is not None:
            self._check.good()
            if self.on_read is not None:
                self.on_read(group, members)
        return reply, members

    def _unreadable(self, group: str, reply: Reply) -> str:
        if reply.ok:  # 2xx but not a member list: say so rather than guess
            return f"listing group {group}: {self._check.bad(reply)}"
        return reason(reply)

    async def _known(self, group: str, trace: Trace) -> Members | Result:
        """With precheck: the group's (live, cached) members, or the row's failure."""
        assert self._cache is not None
        look = await self._cache.get(group, trace)
        if look.members is not None:
            return look.members
        if not look.own:
            trace.share(look.reply)
        if look.reply.ok:
            return trace.result(Status.FAILED, self._unreadable(group, look.reply))
        return trace.failed(look.reply)

    async def _decided(self, row: Row, trace: Trace) -> Decision | Result:
        """The row's decision: after the precheck read when there is one, else "change"."""
        if self._cache is None:
            return Decision(Kind.CHANGE)
        found = await groups_of(row, lambda group: self._known(group, trace))
        if isinstance(found, Result):
            return found

        def members_of(group: str) -> Members | Unreadable:
            one = found.get(norm_id(group))
            return one if one is not None else Unreadable(f"group {group} was not read")

        return self.decide(row, members_of)

    def _note(self, group: str, member: str, *, present: bool) -> None:
        # A change the server confirmed: later rows see it without a read.
        members = self._cache.peek(group) if self._cache is not None else None
        if members is not None:
            (members.add if present else members.discard)(member)

    # -- one change -------------------------------------------------------------------------

    async def _send(self, group: str, member: str, *, add: bool) -> Reply:
        if add:
            body = {"group": group, "newMember": member}
            return await self._t.send("POST", _MEMBERS, json=body, headers=self._wait)
        # params: aiohttp encodes them (DNs hold commas, '=', spaces, '+', '#', non-ASCII).
        query = {"group": group, "member": member}
        return await self._t.send("DELETE", _MEMBERS, params=query, headers=self._wait)

    async def _change(self, group: str, member: str, trace: Trace, *, add: bool) -> Step:
        reply = trace.see(await self._send(group, member, add=add))
        if not reply.ok:
            return Step(Status.FAILED, reason(reply))
        if reply.status == 202:
            done = await wait_for_operation(self._t, reply, trace, limit_s=self._poll_limit_s)
            if isinstance(done, str):
                # The change may still happen: what the cache holds of the group is unsure.
                if self._cache is not None:
                    self._cache.forget(group)
                return Step(Status.FAILED, done)
            result: Any = done
        else:
            result = reply.body
        kind = result.get("resultType") if isinstance(result, dict) else None
        # `type(...) is int`: `{"resultType": false}` is no result (False == 0 in Python).
        if type(kind) is not int or kind not in (_SUCCEEDED, _FAILED, _SUSPENDED):
            return Step(Status.FAILED, self._check.bad(reply))
        self._check.good()
        assert isinstance(result, dict)
        return await self._judged(group, member, trace, result, add=add)

    async def _judged(self, group: str, member: str, trace: Trace, result: dict[str, Any],
                      *, add: bool) -> Step:
        kind = result["resultType"]
        if kind == _SUCCEEDED:
            self._note(group, member, present=add)
            extra = result.get("extraInfo")
            if isinstance(extra, dict) and extra.get("noChanges") is True:
                return Step(Status.NOOP)
            return Step(Status.OK)
        if kind == _SUSPENDED:
            return Step(Status.PENDING)
        return await self._settle(group, member, trace, add=add, said=message_of(result))

    async def _settle(self, group: str, member: str, trace: Trace, *, add: bool, said: str) -> Step:
        """After a refusal: read the group, and call the row done only if the membership
        already is what it asked for. Anything unsure keeps the server's refusal (a member
        named by SID, when the list came back without SIDs)."""
        reply, members = await self._read(group)
        trace.see(reply)
        if members is None:
            return Step(Status.FAILED, said)
        if self._cache is not None:
            self._cache.store(group, reply, members)
        if members.has(member) is add:
            return Step(Status.NOOP)
        return Step(Status.FAILED, said)

    # -- ops --------------------------------------------------------------------------------

    async def _single(self, row: Row, trace: Trace, *, add: bool) -> Result:
        step = await self._change(row.group, row.member, trace, add=add)
        return trace.result(step.status, step.error)

    async def _move(self, row: Row, decision: Decision, trace: Trace) -> Result:
        # Add first, remove second: the member is never left in neither group.
        added = Step(Status.NOOP)
        if decision.add:
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
        if added.status is Status.NOOP and removed.status is Status.NOOP:
            return trace.result(Status.NOOP)
        # Known (read before) to be in the destination already: only the removal happened, and
        # only it is to be undone. An add answered "already a member" proves nothing: it may
        # be this run's own add whose answer was lost.
        return trace.result(Status.OK, left=None if decision.add else (row.member,))

    async def _fresh(self, group: str, trace: Trace) -> Members | Result:
        reply, members = await self._read(group)
        trace.see(reply)
        if members is not None:
            return members
        if not reply.ok:
            return trace.failed(reply)
        return trace.result(Status.FAILED, self._unreadable(group, reply))

    async def _move_all(self, row: Row, trace: Trace) -> Result:
        # Fresh lists, not the cache: `moved` is what `undo` will move back. The destination
        # is read before any change: who was there already only leaves the source (an
        # "already a member" answer could be this run's own add whose answer was lost).
        members = await self._fresh(row.group, trace)
        if isinstance(members, Result):
            return members
        dst = await self._fresh(row.to_group, trace) if members.entries else members
        if isinstance(dst, Result):
            return dst
        found = {norm_id(row.group): members, norm_id(row.to_group): dst}
        decision = self.decide(row, lambda g: found.get(norm_id(g), Unreadable(g)))
        settled = trace.settled(row, decision)
        if settled is not None:
            return settled
        return await self._walk(row, members, dst, trace)

    async def _walk(self, row: Row, members: Members, dst: Members, trace: Trace) -> Result:
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
