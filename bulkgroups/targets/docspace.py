"""ONLYOFFICE DocSpace groups: one row becomes one or two requests, the answers one Result.

DocSpace's member calls are idempotent (removing a non-member is a silent 200), so an answer
alone cannot tell `noop` from `ok`; only `precheck` (the group read first) can.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bulkgroups.http.transport import Reply, Transport
from bulkgroups.model import Op, Result, Row, Status
from bulkgroups.targets.batcher import Batcher, Gate
from bulkgroups.targets.members import MemberCache, Trace, reason

_GROUP = "/api/2.0/group/"

Members = set[str]


def _key(uuid: str) -> str:
    return uuid.strip().lower()


def _seg(value: str) -> str:
    """One path segment from an input value: quoted so that `/`, `?`, `#` stay data. A
    segment of only dots cannot be quoted (the URL library resolves it as `..`), so it is
    refused outright."""
    if not value or value.strip(".") == "":
        raise ValueError(f"{value!r} is not a usable id")
    return quote(value, safe="")


def member_ids(body: Any) -> list[str] | None:
    """The member ids of a group as DocSpace returns it (read, add, remove), None if the
    answer is not a group with its member list."""
    group = body.get("response") if isinstance(body, dict) else None
    if not isinstance(group, dict):
        return None
    members = group.get("members")
    if not isinstance(members, list):
        return None
    ids: list[str] = []
    for m in members:
        if isinstance(m, dict) and isinstance(m.get("id"), str):
            ids.append(m["id"])
        elif isinstance(m, str):
            ids.append(m)
    return ids


def _joined(reply: Reply, member: str) -> bool:
    """Whether an add took: DocSpace answers 200 even when it skips an id (unknown account,
    terminated user), but the group it returns lists the members. An answer without a member
    list is taken at its word."""
    ids = member_ids(reply.body)
    return ids is None or _key(member) in {_key(i) for i in ids}


def _skipped(member: str, group: str) -> str:
    return f"DocSpace did not add {member} to {group} (unknown or terminated account)"


class DocSpaceTarget:
    """`Target` for DocSpace: `remove`, `add`, `move` (add, then remove) and `move_all`."""

    __slots__ = ("_batcher", "_cache", "_protected", "_t")

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
        self._protected = frozenset(_key(p) for p in protected)
        self._cache: MemberCache[Members] | None = (
            MemberCache(self._load, key=_key) if precheck else None
        )

    def abandon(self) -> None:
        self._t.abandon()
        if self._batcher is not None:
            self._batcher.abandon()  # rows waiting for a batch request: no outcome

    async def apply(self, row: Row) -> Result:
        trace = Trace()
        try:
            if row.op is Op.REMOVE:
                return await self._remove(row, trace)
            if row.op is Op.ADD:
                return await self._add(row, trace)
            if row.op is Op.MOVE:
                return await self._move(row, trace)
            if row.op is Op.MOVE_ALL:
                return await self._move_all(row, trace)
        except ValueError as exc:  # from _seg: the row never reached the network
            return trace.result(Status.FAILED, str(exc))
        return trace.result(Status.FAILED, f"unsupported op {row.op!r}")

    # -- requests -------------------------------------------------------------------------

    async def _read(self, group: str) -> Reply:
        return await self._t.send("GET", _GROUP + _seg(group))

    async def _load(self, group: str) -> tuple[Reply, Members | None]:
        reply = await self._read(group)
        ids = member_ids(reply.body) if reply.ok else None
        return reply, None if ids is None else {_key(i) for i in ids}

    async def _send_members(self, method: str, group: str, members: list[str]) -> Reply:
        # A removal's answer (the group's remaining members, possibly thousands) is never
        # read; an add's is, to see who joined.
        return await self._t.send(method, _GROUP + _seg(group) + "/members",
                                  json={"members": members}, decode=method != "DELETE")

    async def _change(self, method: str, group: str, member: str, trace: Trace) -> Reply:
        if self._batcher is None:
            return trace.see(await self._send_members(method, group, [member]))
        return trace.see(await self._batcher.submit(method, group, member))

    async def _members(self, group: str, trace: Trace) -> Members | Result:
        """With precheck: the group's (live, cached) member set, or the row's failure."""
        assert self._cache is not None
        look = await self._cache.get(group, trace)
        if look.members is not None:
            return look.members
        if not look.own:
            trace.share(look.reply)
        if look.reply.ok:  # 2xx but not a group: say so rather than guess
            return trace.result(Status.FAILED, f"unexpected answer reading group {group}")
        return trace.failed(look.reply)

    def _note(self, group: str, member: str, *, present: bool) -> None:
        # After a change the server confirmed, so that later rows see it without a read.
        if self._cache is None:
            return
        members = self._cache.peek(group)
        if members is not None:
            (members.add if present else members.discard)(_key(member))

    # -- ops ------------------------------------------------------------------------------

    async def _remove(self, row: Row, trace: Trace) -> Result:
        if self._cache is not None:
            members = await self._members(row.group, trace)
            if isinstance(members, Result):
                return members
            if _key(row.member) not in members:
                return trace.result(Status.NOOP)
        reply = await self._change("DELETE", row.group, row.member, trace)
        if not reply.ok:
            return trace.failed(reply)
        self._note(row.group, row.member, present=False)
        return trace.result(Status.OK)

    async def _add(self, row: Row, trace: Trace) -> Result:
        if self._cache is not None:
            members = await self._members(row.group, trace)
            if isinstance(members, Result):
                return members
            if _key(row.member) in members:
                return trace.result(Status.NOOP)
        reply = await self._change("PUT", row.group, row.member, trace)
        if not reply.ok:
            return trace.failed(reply)
        if not _joined(reply, row.member):
            return trace.result(Status.FAILED, _skipped(row.member, row.group))
        self._note(row.group, row.member, present=True)
        return trace.result(Status.OK)

    async def _move(self, row: Row, trace: Trace) -> Result:
        need_add = True
        if self._cache is not None:
            src = await self._members(row.group, trace)
            if isinstance(src, Result):
                return src
            dst = await self._members(row.to_group, trace)
            if isinstance(dst, Result):
                return dst
            in_src, in_dst = _key(row.member) in src, _key(row.member) in dst
            if not in_src:
                if in_dst:
                    return trace.result(Status.NOOP)
                # Adding someone who was never in the source is not a move.
                return trace.result(
                    Status.FAILED, f"member is not in group {row.group} (nor in {row.to_group})"
                )
            need_add = not in_dst
        # Add first, remove second: a failure between the two leaves the member in both
        # groups, never in neither.
        if need_add:
            added = await self._change("PUT", row.to_group, row.member, trace)
            if not added.ok:
                return trace.failed(added)
            if not _joined(added, row.member):
                # Removing now would leave the member in neither group.
                return trace.result(Status.FAILED, _skipped(row.member, row.to_group))
            self._note(row.to_group, row.member, present=True)
        removed = await self._change("DELETE", row.group, row.member, trace)
        if not removed.ok:
            return trace.result(
                Status.FAILED,
                f"added to {row.to_group} but not removed from {row.group}: {reason(removed)}",
            )
        self._note(row.group, row.member, present=False)
        # Already in the destination: only the removal happened, and only it is to be undone.
        return trace.result(Status.OK, left=None if need_add else (row.member,))

    async def _move_all(self, row: Row, trace: Trace) -> Result:
        # Both groups read fresh, before: who joins the destination and who only leaves the
        # source (guests, terminated users, members already there) is what `undo` reverses.
        src = await self._fresh_ids(row.group, trace)
        if isinstance(src, Result):
            return src
        if not src:
            # Nothing to move; no write spent from the daily cap.
            return trace.result(Status.NOOP, moved=(), left=())
        if self._protected and any(_key(m) in self._protected for m in src):
            return trace.result(Status.INVALID, "protected")
        dst = await self._fresh_ids(row.to_group, trace)
        if isinstance(dst, Result):
            return dst
        path = f"{_GROUP}{_seg(row.group)}/members/{_seg(row.to_group)}"
        reply = trace.see(await self._t.send("PUT", path))
        if not reply.ok:
            return trace.failed(reply)
        if self._cache is not None:
            self._cache.forget(row.group)
            self._cache.forget(row.to_group)
        before = {_key(m) for m in dst}
        after_ids = member_ids(reply.body)
        after = {_key(m) for m in after_ids} if after_ids is not None else None
        moved = tuple(m for m in src if _key(m) not in before
                      and (after is None or _key(m) in after))
        joined = {_key(m) for m in moved}
        left = tuple(m for m in src if _key(m) not in joined)
        return trace.result(Status.OK, moved=moved, left=left)

    async def _fresh_ids(self, group: str, trace: Trace) -> list[str] | Result:
        read = trace.see(await self._read(group))
        if not read.ok:
            return trace.failed(read)
        ids = member_ids(read.body)
        if ids is None:
            return trace.result(Status.FAILED, f"unexpected answer reading group {group}")
        return ids
