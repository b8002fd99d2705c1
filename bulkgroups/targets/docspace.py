"""ONLYOFFICE DocSpace groups: one row becomes one or two requests, the answers one Result.

DocSpace's member calls are idempotent (removing a non-member is a silent 200), so an answer
alone cannot tell `noop` from `ok`; only `precheck` (the group read first) can. What a row
needs is decided by `decide` (pure), from `membership` reads; `run` and `plan` share both.

Terminated accounts are hidden from every member list, yet stay members until removed, and a
removal does remove them. So a removal whose member is not listed is not a `noop` on the list's
word: the group's terminated members are read (the people search, which reads the membership
links) and the removal is sent if the member is one of them. A change is `ok` only on the
API's own success shape: the envelope with a group whose listed members agree with it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bulkgroups.http.transport import Reply, Transport
from bulkgroups.identity import norm_id
from bulkgroups.model import Op, Result, Row, Status
from bulkgroups.planning.snapshot import SnapMember
from bulkgroups.targets.batcher import Batcher, Gate
from bulkgroups.targets.decision import (
    Decision,
    Kind,
    Lookup,
    Membership,
    OnRead,
    Unreadable,
    in_group,
    judge,
    unchecked,
)
from bulkgroups.targets.members import AnswerCheck, MemberCache, Trace, groups_of, reason

_GROUP = "/api/2.0/group/"
_PEOPLE = "/api/2.0/people/filter"
HIDDEN_REMOVED = "a terminated account (hidden from member lists), removed: DocSpace will " \
    "not add it back"
_PAGE = 100  # the most `count` may be (ApiContext.MaxCount)
_TERMINATED = "2"  # EmployeeStatus.Terminated

HIDDEN_UNKNOWN = "not listed in the group, and its terminated members (hidden from lists) " \
    "could not be read"


class DsMembers:
    """One group's members: the listed ones, and the terminated ones the lists hide (None
    until read, or when they cannot be read: `hidden_why` says why)."""

    __slots__ = ("gone", "guests", "hidden", "hidden_why", "listed", "name")

    def __init__(self, listed: list[str], guests: frozenset[str] = frozenset()) -> None:
        self.listed: dict[str, str] = {norm_id(i): i for i in listed}
        # norm_id of listed guests, where the read says (`isVisitor`): adds skip guests, so
        # undo cannot put one back and must say so.
        self.guests = guests
        self.name: str | None = None  # the group's display name, where the read gave it
        self.hidden: set[str] | None = None
        self.hidden_why: str | None = None
        self.gone: set[str] = set()  # removed since the read: known to be out, hidden or not

    def has(self, member: str) -> bool | None:
        key = norm_id(member)
        if key in self.listed or (self.hidden is not None and key in self.hidden):
            return True
        return None if self.hidden is None and key not in self.gone else False

    def settled(self) -> DsMembers:
        """A view in which a member neither listed nor known hidden is not a member."""
        view = DsMembers([])
        view.listed = self.listed
        view.gone = self.gone
        view.hidden = self.hidden if self.hidden is not None else set()
        return view

    def is_hidden(self, member: str) -> bool:
        return self.hidden is not None and norm_id(member) in self.hidden

    def lists(self, member: str) -> bool:
        return norm_id(member) in self.listed

    def __len__(self) -> int:
        return len(self.listed)

    def names(self) -> list[str]:
        return list(self.listed.values())

    def snapshot(self) -> list[SnapMember]:
        return [SnapMember(i, kind="guest" if k in self.guests else "user")
                for k, i in self.listed.items()]

    def add(self, member: str) -> None:
        self.listed.setdefault(norm_id(member), member)
        self.gone.discard(norm_id(member))

    def discard(self, member: str) -> None:
        key = norm_id(member)
        self.listed.pop(key, None)
        self.gone.add(key)
        if self.hidden is not None:
            self.hidden.discard(key)

    def carries(self, protected: frozenset[str]) -> bool:
        return any(key in protected for key in self.listed)


def _seg(value: str) -> str:
    """One path segment from an input value: quoted so that `/`, `?`, `#` stay data. A
    segment of only dots cannot be quoted (the URL library resolves it as `..`), so it is
    refused outright."""
    if not value or value.strip(".") == "":
        raise ValueError(f"{value!r} is not a usable id")
    return quote(value, safe="")


def _ids(items: Any) -> list[str] | None:
    if not isinstance(items, list):
        return None
    ids: list[str] = []
    for m in items:
        if isinstance(m, dict) and isinstance(m.get("id"), str):
            ids.append(m["id"])
        elif isinstance(m, str):
            ids.append(m)
    return ids


def _envelope(body: Any) -> Any:
    """The `response` of DocSpace's success envelope (`status` 0, `statusCode` 200), or
    None when the body is not one. `type(...) is int`: `False == 0` in Python."""
    if not isinstance(body, dict):
        return None
    status, code = body.get("status"), body.get("statusCode")
    if type(status) is not int or status != 0 or type(code) is not int or code != 200:
        return None
    return body.get("response")


def guests_of(body: Any) -> frozenset[str]:
    """norm_id of the guests among a group read's members, where the employee records say
    (`isVisitor`); empty when they do not."""
    group = _envelope(body)
    items = group.get("members") if isinstance(group, dict) else None
    if not isinstance(items, list):
        return frozenset()
    return frozenset(norm_id(m["id"]) for m in items if isinstance(m, dict)
                     and isinstance(m.get("id"), str) and m.get("isVisitor") is True)


def member_ids(body: Any) -> list[str] | None:
    """The listed member ids of the group in a success envelope (read, add, remove,
    move-all), None if the answer is not one."""
    group = _envelope(body)
    if not isinstance(group, dict) or not isinstance(group.get("id"), str):
        return None
    return _ids(group.get("members"))


def decide(row: Row, members_of: Lookup, protected: frozenset[str] = frozenset()) -> Decision:
    """What a row needs, from the groups as read (pure). On top of `judge`: a moved member
    that is a hidden terminated account would not be added to the destination (adds skip
    terminated accounts), so the move would fail; a removal whose member is neither listed
    nor known to be hidden is sent anyway, unsure (see the module's text)."""
    lookup = members_of
    if row.op is Op.MOVE:
        # The destination only decides whether to add: a member it does not list is added
        # (a hidden terminated member is found in the source, where the move fails first).
        def lookup(group: str) -> Membership | Unreadable:
            found = members_of(group)
            if isinstance(found, DsMembers) and norm_id(group) == norm_id(row.to_group):
                return found.settled()
            return found

    decision = judge(row, lookup, protected=protected, unsure=HIDDEN_UNKNOWN)
    src = members_of(row.group)
    if (row.op is Op.MOVE and decision.kind is Kind.CHANGE and decision.add
            and isinstance(src, DsMembers) and src.is_hidden(row.member)):
        return Decision(
            Kind.FAIL, f"{row.member} is a terminated account: DocSpace will not add it to "
            f"{row.to_group} (remove it instead)", precondition=(in_group(row.group, row.member),),
        )
    return decision


def _skipped(member: str, group: str) -> str:
    return f"DocSpace did not add {member} to {group} (a guest, terminated or unknown account)"


class DocSpaceTarget:
    """`Target` for DocSpace: `remove`, `add`, `move` (add, then remove) and `move_all`."""

    __slots__ = ("_batcher", "_cache", "_check", "_hidden", "_listed", "_protected", "_t",
                 "on_read")

    def __init__(
        self,
        transport: Transport,
        *,
        precheck: bool,
        protected: frozenset[str] = frozenset(),
        batch_size: int = 1,
        gate: Gate | None = None,
        concurrency: int = 10,
    ) -> None:
        self._t = transport
        # The member calls take a list: rows of one group and verb share a request.
        self._batcher = (
            Batcher(self._send_members, size=batch_size, gate=gate, max_in_flight=concurrency)
            if batch_size > 1
            else None
        )
        self._protected = frozenset(norm_id(p) for p in protected)
        self._cache: MemberCache[DsMembers] | None = (
            MemberCache(self._load, key=norm_id) if precheck else None
        )
        # A group's terminated members, read only when a removal meets a member not listed.
        self._hidden: MemberCache[set[str]] | None = (
            MemberCache(self._load_hidden, key=norm_id) if precheck else None
        )
        self._check = AnswerCheck()
        # The last change answer's members, as norm_ids: the rows of a batch share one answer
        # (a group of thousands), which is read once, not once a row.
        self._listed: tuple[Reply | None, frozenset[str] | None] = (None, None)
        self.on_read: OnRead | None = None

    def abandon(self) -> None:
        self._t.abandon()
        if self._batcher is not None:
            self._batcher.abandon()  # rows waiting for a batch request: no outcome

    def decide(self, row: Row, members_of: Lookup) -> Decision:
        decision = decide(row, members_of, self._protected)
        if self._cache is None:  # what a run without precheck will meet
            return unchecked(decision, row, already_is_ok=True)
        return decision

    async def membership(self, group: str) -> DsMembers | Unreadable:
        """A group as `plan` sees it: listed members, and the terminated ones it hides."""
        try:
            reply, members = await self._load(group)
        except ValueError as exc:
            return Unreadable(str(exc))
        if members is None:
            return Unreadable(self._unreadable(group, reply))
        hidden_reply, hidden = await self._load_hidden(group)
        self._set_hidden(members, hidden_reply, hidden)
        return members

    async def apply(self, row: Row) -> Result:
        trace = Trace()
        try:
            if row.op is Op.MOVE_ALL:
                return await self._move_all(row, trace)
            decision = await self._decided(row, trace)
            if isinstance(decision, Result):
                return decision
            return await self._carry_out(row, decision, trace)
        except ValueError as exc:  # from _seg: the row never reached the network
            return trace.result(Status.FAILED, str(exc))

    async def _carry_out(self, row: Row, decision: Decision, trace: Trace) -> Result:
        settled = trace.settled(row, decision)
        if settled is not None:
            return settled
        if row.op is Op.REMOVE:
            return await self._remove(row, decision, trace)
        if row.op is Op.ADD:
            return await self._add(row, trace)
        if row.op is Op.MOVE:
            return await self._move(row, decision, trace)
        return trace.result(Status.FAILED, f"unsupported op {row.op!r}")

    # -- requests -------------------------------------------------------------------------

    async def _read(self, group: str) -> Reply:
        return await self._t.send("GET", _GROUP + _seg(group))

    async def _load(self, group: str) -> tuple[Reply, DsMembers | None]:
        reply = await self._read(group)
        ids = member_ids(reply.body) if reply.ok else None
        if ids is None:
            return reply, None
        members = DsMembers(ids, guests_of(reply.body))
        group_dto = _envelope(reply.body)
        if isinstance(group_dto, dict) and isinstance(group_dto.get("name"), str):
            members.name = group_dto["name"]
        if self.on_read is not None:
            self.on_read(group, members)
        return reply, members

    async def _load_hidden(self, group: str) -> tuple[Reply, set[str] | None]:
        """The group's terminated members, page by page, from the people search."""
        found: set[str] = set()
        start = 0
        while True:
            params = {"groupId": group, "employeeStatus": _TERMINATED, "count": str(_PAGE),
                      "startIndex": str(start)}
            reply = await self._t.send("GET", _PEOPLE, params=params)
            page = _ids(_envelope(reply.body)) if reply.ok else None
            total = reply.body.get("total") if isinstance(reply.body, dict) else None
            if page is None:
                return reply, None
            found.update(norm_id(i) for i in page)
            start += len(page)
            if not page or type(total) is not int or start >= total:
                return reply, found

    def _set_hidden(self, members: DsMembers, reply: Reply, hidden: set[str] | None) -> None:
        members.hidden = hidden
        members.hidden_why = None if hidden is not None else reason(reply)

    async def _send_members(self, method: str, group: str, members: list[str]) -> Reply:
        # Both answers are read: the group they return is how a change is known to be made.
        return await self._t.send(method, _GROUP + _seg(group) + "/members",
                                  json={"members": members})

    async def _change(self, method: str, group: str, member: str, trace: Trace) -> Reply:
        if self._batcher is None:
            return trace.see(await self._send_members(method, group, [member]))
        return trace.see(await self._batcher.submit(method, group, member))

    # -- reading for a decision -------------------------------------------------------------

    def _unreadable(self, group: str, reply: Reply) -> str:
        if reply.ok:  # 2xx but not a group: say so rather than guess
            return f"reading group {group}: {self._check.bad(reply)}"
        return reason(reply)

    async def _members(self, group: str, trace: Trace) -> DsMembers | Result:
        """With precheck: the group's (live, cached) members, or the row's failure."""
        assert self._cache is not None
        look = await self._cache.get(group, trace)
        if look.members is not None:
            self._check.good()
            return look.members
        if not look.own:
            trace.share(look.reply)
        if look.reply.ok:
            return trace.result(Status.FAILED, self._unreadable(group, look.reply))
        return trace.failed(look.reply)

    async def _with_hidden(self, group: str, members: DsMembers, trace: Trace) -> None:
        """Reads the group's terminated members once, when a row first needs them."""
        if members.hidden is not None or members.hidden_why is not None:
            return
        assert self._hidden is not None
        look = await self._hidden.get(group, trace)
        if members.hidden is None and members.hidden_why is None:
            self._set_hidden(members, look.reply, look.members)

    async def _decided(self, row: Row, trace: Trace) -> Decision | Result:
        """The row's decision: after the precheck read when there is one, else "change"."""
        if self._cache is None:
            return Decision(Kind.CHANGE)
        found = await groups_of(row, lambda group: self._members(group, trace))
        if isinstance(found, Result):
            return found
        src = found[norm_id(row.group)]
        if src.has(row.member) is None:
            await self._with_hidden(row.group, src, trace)

        def members_of(group: str) -> DsMembers | Unreadable:
            one = found.get(norm_id(group))
            return one if one is not None else Unreadable(f"group {group} was not read")

        return self.decide(row, members_of)

    def _note(self, group: str, member: str, *, present: bool) -> None:
        # After a change the server confirmed, so that later rows see it without a read.
        if self._cache is None:
            return
        members = self._cache.peek(group)
        if members is not None:
            (members.add if present else members.discard)(member)

    # -- ops ------------------------------------------------------------------------------

    def _listed_after(self, reply: Reply, member: str, trace: Trace) -> bool | Result:
        """Whether a change's answer lists `member`; a failed row when it is no group."""
        seen, keys = self._listed
        if seen is not reply:
            ids = member_ids(reply.body)
            keys = None if ids is None else frozenset(norm_id(i) for i in ids)
            self._listed = (reply, keys)
        if keys is None:
            return trace.result(Status.FAILED, self._check.bad(reply))
        self._check.good()
        return norm_id(member) in keys

    async def _remove(self, row: Row, decision: Decision, trace: Trace) -> Result:
        reply = await self._change("DELETE", row.group, row.member, trace)
        if not reply.ok:
            return trace.failed(reply)
        listed = self._listed_after(reply, row.member, trace)
        if isinstance(listed, Result):
            return listed
        if listed:
            return trace.result(Status.FAILED,
                                f"DocSpace still lists {row.member} in {row.group}")
        src = self._cache.peek(row.group) if self._cache is not None else None
        was_hidden = src is not None and src.is_hidden(row.member)
        self._note(row.group, row.member, present=False)
        if decision.unsure is not None:
            # Sent in case it was a hidden terminated member; whether it was is not known,
            # so neither `ok` (undo would add back someone who may never have been there)
            # nor `noop` (it may have been removed) is true. The membership is right now.
            why = f" ({src.hidden_why})" if src is not None and src.hidden_why else ""
            return trace.result(Status.FAILED, f"{row.member} {HIDDEN_UNKNOWN}{why}: the "
                                "removal was sent, but whether it changed anything is unknown")
        # A note on an `ok` row (report counts errors of failed rows only): undo cannot put
        # a terminated account back, since adds skip them.
        return trace.result(Status.OK, HIDDEN_REMOVED if was_hidden else None)

    async def _add(self, row: Row, trace: Trace) -> Result:
        reply = await self._change("PUT", row.group, row.member, trace)
        if not reply.ok:
            return trace.failed(reply)
        listed = self._listed_after(reply, row.member, trace)
        if isinstance(listed, Result):
            return listed
        if not listed:
            return trace.result(Status.FAILED, _skipped(row.member, row.group))
        self._note(row.group, row.member, present=True)
        return trace.result(Status.OK)

    async def _move(self, row: Row, decision: Decision, trace: Trace) -> Result:
        # Add first, remove second: a failure between the two leaves the member in both
        # groups, never in neither.
        if decision.add:
            added = await self._add(Row(row.row, row.line, Op.ADD, row.to_group, row.member),
                                    trace)
            if added.status is not Status.OK:
                return added  # removing now would leave the member in neither group
        removed = await self._change("DELETE", row.group, row.member, trace)
        if not removed.ok:
            return trace.result(
                Status.FAILED,
                f"added to {row.to_group} but not removed from {row.group}: {reason(removed)}",
            )
        listed = self._listed_after(removed, row.member, trace)
        if isinstance(listed, Result) or listed:
            return trace.result(Status.FAILED, f"in {row.to_group} but DocSpace still lists "
                                f"it in {row.group}")
        self._note(row.group, row.member, present=False)
        # Already in the destination: only the removal happened, and only it is to be undone.
        return trace.result(Status.OK, left=None if decision.add else (row.member,))

    async def _move_all(self, row: Row, trace: Trace) -> Result:
        # Both groups read fresh, before: who joins the destination and who only leaves the
        # source (guests, members already there) is what `undo` reverses. Terminated members
        # are not listed, so the server does not walk them: they stay in the source.
        src = await self._fresh(row.group, trace)
        if isinstance(src, Result):
            return src
        dst = await self._fresh(row.to_group, trace) if len(src) else src
        if isinstance(dst, Result):
            return dst
        found = {norm_id(row.group): src, norm_id(row.to_group): dst}
        decision = self.decide(row, lambda g: found.get(norm_id(g), Unreadable(g)))
        settled = trace.settled(row, decision)
        if settled is not None:
            return settled
        path = f"{_GROUP}{_seg(row.group)}/members/{_seg(row.to_group)}"
        reply = trace.see(await self._t.send("PUT", path))
        if self._cache is not None:
            self._cache.forget(row.group)
            self._cache.forget(row.to_group)
        if not reply.ok:
            return trace.failed(reply)
        after_ids = member_ids(reply.body)
        if after_ids is None:
            return trace.result(Status.FAILED, self._check.bad(reply))
        self._check.good()
        after = {norm_id(m) for m in after_ids}
        moved = tuple(m for m in src.names() if not dst.lists(m) and norm_id(m) in after)
        joined = {norm_id(m) for m in moved}
        left = tuple(m for m in src.names() if norm_id(m) not in joined)
        return trace.result(Status.OK, moved=moved, left=left)

    async def _fresh(self, group: str, trace: Trace) -> DsMembers | Result:
        reply, members = await self._load(group)
        trace.see(reply)
        if members is not None:
            self._check.good()
            return members
        if not reply.ok:
            return trace.failed(reply)
        return trace.result(Status.FAILED, self._unreadable(group, reply))
