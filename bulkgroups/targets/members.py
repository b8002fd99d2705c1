"""Each group's members, read once per run and shared by every row that needs them.

With `precheck` on, thousands of rows name the same few groups; reading a group once and
answering the obvious noops from memory saves a request per row. Concurrent rows of one group
wait on one read (a lock per group) instead of each sending its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from bulkgroups.http.auth import AuthRefused
from bulkgroups.http.transport import Reply, message_of
from bulkgroups.identity import norm_id
from bulkgroups.model import Op, Result, Row, Status
from bulkgroups.planning.checks import stale_reason
from bulkgroups.targets.decision import Decision, Kind

M = TypeVar("M")


class Trace:
    """What one row's requests added up to: the last HTTP status, and `attempts` as 1 + the
    retries of all its requests (0 when none was sent), so a move's two requests with no
    retry read 1 and `attempts - 1` is always the row's retries."""

    __slots__ = ("retries", "sent", "status")

    def __init__(self) -> None:
        self.sent = False
        self.retries = 0
        self.status: int | None = None

    @property
    def attempts(self) -> int:
        return 1 + self.retries if self.sent else 0

    def see(self, reply: Reply) -> Reply:
        self.sent = True
        self.retries += max(0, reply.attempts - 1)
        if reply.status is not None:
            self.status = reply.status
        return reply

    def share(self, reply: Reply) -> None:
        """Another row's read decided this row: its status, not its attempts, is this row's."""
        if reply.status is not None:
            self.status = reply.status

    def result(
        self,
        status: Status,
        error: str | None = None,
        moved: tuple[str, ...] | None = None,
        left: tuple[str, ...] | None = None,
    ) -> Result:
        return Result(
            status, http_status=self.status, attempts=self.attempts, error=error, moved=moved,
            left=left,
        )

    def failed(self, reply: Reply) -> Result:
        return self.result(Status.FAILED, reason(reply))

    def settled(self, row: Row, decision: Decision) -> Result | None:
        """The row's outcome when the decision needs no request; None for a change. A saved
        plan's row whose precondition no longer holds is `stale` and is not sent."""
        stale = stale_reason(row, decision)
        if stale is not None:
            return self.result(Status.STALE, stale)
        if decision.kind is Kind.ALREADY:
            if row.op is Op.MOVE_ALL:  # nothing to move: undo has nothing to move back
                return self.result(Status.NOOP, moved=(), left=())
            return self.result(Status.NOOP)
        if decision.kind is Kind.FAIL:
            return self.result(Status.FAILED, decision.reason)
        if decision.kind is Kind.INVALID:
            return self.result(Status.INVALID, decision.reason)
        return None


# Answers in a row that are not the API's own shape, before any that is, after which the run
# stops: three is enough to tell a login page in front of the portal from one odd answer.
FIRST_ANSWERS = 3


class UnexpectedAnswers(AuthRefused):
    """The first answers were none of them the API's own (an SSO or WAF page, an empty
    200): every row would end alike, so the run stops (exit 3)."""


def body_kind(reply: Reply) -> str:
    """What an answer's body was, in words: "HTML page", "empty", "not JSON", "JSON" (then
    of another shape than the API's), as the transport saw it."""
    return reply.body_kind.value


class AnswerCheck:
    """Counts answers that are not the API's own shape until one is; raises
    UnexpectedAnswers when the first FIRST_ANSWERS are all such."""

    __slots__ = ("_bad", "_good", "_limit")

    def __init__(self, limit: int = FIRST_ANSWERS) -> None:
        self._good = False
        self._bad = 0
        self._limit = limit

    def good(self) -> None:
        self._good = True

    def bad(self, reply: Reply) -> str:
        """The row's error for an unexpected answer; raises on the limit's one."""
        what = f"unexpected answer: {body_kind(reply)}, HTTP {reply.status}"
        if not self._good:
            self._bad += 1
            if self._bad >= self._limit:
                raise UnexpectedAnswers(
                    f"the first {self._bad} answers were not the API's own ({what[19:]}): "
                    "something in front of the server (a sign-in or firewall page?) answers "
                    "instead; check base_url"
                )
        return what


def reason(reply: Reply) -> str:
    """Why a request did not succeed, in the server's words when it gave any."""
    if reply.error:
        return reply.error
    said = message_of(reply.body)
    if said != "no message" or reply.status is None:
        return said
    return f"HTTP {reply.status} without a message"


def is_final_refusal(reply: Reply) -> bool:
    """A 4xx answer will not change on a second read (unknown group, bad id); a timeout or
    an exhausted 5xx might."""
    return reply.status is not None and 400 <= reply.status < 500 and reply.status != 429


@dataclass(frozen=True, slots=True)
class Lookup(Generic[M]):
    members: M | None  # None: the group could not be read; `reply` says why
    reply: Reply
    own: bool  # this row sent the read, so its attempts count for the row


Loader = Callable[[str], Awaitable[tuple[Reply, M | None]]]


class MemberCache(Generic[M]):
    """`get(group)` reads a group on first use; later calls get the same (live) object, which
    the adapter updates in place after each change it makes."""

    __slots__ = ("_key", "_known", "_load", "_reading")

    def __init__(self, load: Loader[M], *, key: Callable[[str], str]) -> None:
        self._load = load
        self._key = key
        self._known: dict[str, tuple[Reply, M | None]] = {}
        # One read a group at a time; the rows that wait share its future, so they all wake
        # in the same loop turn (a lock would wake them one a turn and split their batches).
        self._reading: dict[str, asyncio.Future[tuple[Reply, M | None]]] = {}

    async def get(self, group: str, trace: Trace) -> Lookup[M]:
        key = self._key(group)
        known = self._known.get(key)
        if known is not None:
            return Lookup(known[1], known[0], own=False)
        pending = self._reading.get(key)
        if pending is not None:
            try:
                reply, members = await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and task is not None and not task.cancelling():
                    return await self.get(group, trace)  # the reader was stopped, not this row
                raise
            return Lookup(members, reply, own=False)
        future: asyncio.Future[tuple[Reply, M | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._reading[key] = future
        try:
            reply, members = await self._load(group)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # the waiters, if any, see it; nobody else need
            raise
        finally:
            del self._reading[key]
        trace.see(reply)
        # The decoded body of a group can be large and is not needed once parsed.
        kept = replace(reply, body=None) if members is not None else reply
        # A transient failure is not remembered: the next row reads again.
        if members is not None or is_final_refusal(reply):
            self._known[key] = (kept, members)
        future.set_result((kept, members))
        return Lookup(members, reply, own=True)

    def peek(self, group: str) -> M | None:
        """The members as last known, without reading; None when never read or unreadable."""
        known = self._known.get(self._key(group))
        return None if known is None else known[1]

    def store(self, group: str, reply: Reply, members: M) -> None:
        """Replace what is known with a fresher read."""
        self._known[self._key(group)] = (reply, members)

    def forget(self, group: str) -> None:
        """The next `get` reads the group again (after a change whose effect is not known)."""
        self._known.pop(self._key(group), None)


async def groups_of(
    row: Row, read: Callable[[str], Awaitable[M | Result]]
) -> dict[str, M] | Result:
    """The groups a row's decision rests on, read through `read` (the precheck cache): its
    group, and a move's destination; by `norm_id`. A Result when one cannot be read."""
    found: dict[str, M] = {}
    for group in (row.group, row.to_group) if row.op is Op.MOVE else (row.group,):
        members = await read(group)
        if isinstance(members, Result):
            return members
        found[norm_id(group)] = members
    return found
