"""What a row needs, decided from the groups' memberships: pure, no I/O.

Each adapter reads a group its own way (`membership`) and decides a row with its own rules
(`decide`), built on `judge` here. `run` calls the adapter's `decide` after its precheck read
and acts on the answer; `plan` calls the same `decide` on the same reads and only tallies it,
applying each change (`effect`) so that later rows see it, as the run will. Issue 14 saves a
decision's `precondition` in plan files and re-checks it at send time (`Fact.holds`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bulkgroups.model import Op, Row
from bulkgroups.planning.snapshot import SnapMember


class Kind(StrEnum):
    CHANGE = "change"  # send it
    ALREADY = "already"  # nothing to do: `noop` without a request
    FAIL = "fail"  # would fail: `failed` with the reason, without a request
    INVALID = "invalid"  # a move_all that would carry a protected member along


class Membership(Protocol):
    """One group's members as an adapter read them."""

    @property
    def name(self) -> str | None:
        """The group's display name where the read gave one (plan shows it beside the id)."""
        ...

    def has(self, member: str) -> bool | None:
        """True/False when the read settles it; None when it cannot."""
        ...

    def __len__(self) -> int:
        """The members a move_all would walk."""
        ...

    def names(self) -> list[str]: ...

    def add(self, member: str) -> None: ...

    def discard(self, member: str) -> None: ...

    def carries(self, protected: frozenset[str]) -> bool:
        """Whether any member's id is in `protected` (norm_id forms)."""
        ...

    def snapshot(self) -> list[SnapMember]:
        """The members as a run's snapshot keeps them (exact undo)."""
        ...


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A group that could not be read; `reason` is what every row naming it fails with."""

    reason: str


Lookup = Callable[[str], "Membership | Unreadable"]
# Told of every group an adapter reads, as read (a run's snapshots: exact undo).
OnRead = Callable[[str, "Membership"], None]


@dataclass(frozen=True, slots=True)
class Fact:
    """One membership fact a decision rests on. `member` "" is the group as a whole:
    `present` then means "has members"."""

    group: str
    member: str
    present: bool

    def holds(self, members_of: Lookup) -> bool | None:
        """Whether the fact still holds in these reads; None when they cannot tell."""
        found = members_of(self.group)
        if isinstance(found, Unreadable):
            return None
        if not self.member:
            return (len(found) > 0) is self.present
        has = found.has(self.member)
        return None if has is None else has is self.present

    def __str__(self) -> str:
        if not self.member:
            return f"group {self.group} " + ("has members" if self.present else "is empty")
        return f"member {'in' if self.present else 'not in'} group {self.group}"


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Kind
    reason: str | None = None  # FAIL/INVALID: why; otherwise a note or None
    precondition: tuple[Fact, ...] = ()  # what must still hold for the decision to stand
    unsure: str | None = None  # why the read cannot tell what the run will meet
    add: bool = True  # move: whether the add half is needed (False: already in to_group)

    @property
    def precondition_text(self) -> str:
        return "; ".join(str(f) for f in self.precondition)


def in_group(group: str, member: str) -> Fact:
    return Fact(group, member, present=True)


def not_in_group(group: str, member: str) -> Fact:
    return Fact(group, member, present=False)


def _single(row: Row, src: Membership, *, add: bool, unsure: str) -> Decision:
    has = src.has(row.member)
    if has is None:
        return Decision(Kind.CHANGE, unsure=unsure)
    if has is add:
        return Decision(Kind.ALREADY, precondition=(Fact(row.group, row.member, add),))
    return Decision(Kind.CHANGE, precondition=(Fact(row.group, row.member, not add),))


def _move(row: Row, src: Membership, dst: Membership, *, unsure: str) -> Decision:
    in_src, in_dst = src.has(row.member), dst.has(row.member)
    if in_src is False and in_dst is True:
        return Decision(Kind.ALREADY, precondition=(not_in_group(row.group, row.member),
                                                    in_group(row.to_group, row.member)))
    if in_src is False and in_dst is False:
        # Adding someone who was never in the source is not a move.
        return Decision(
            Kind.FAIL, f"member is not in group {row.group} (nor in {row.to_group})",
            precondition=(not_in_group(row.group, row.member),
                          not_in_group(row.to_group, row.member)),
        )
    facts = []
    if in_src is True:
        facts.append(in_group(row.group, row.member))
    if in_dst is not None:
        facts.append(Fact(row.to_group, row.member, in_dst))
    why = unsure if in_src is None or in_dst is None else None
    return Decision(Kind.CHANGE, precondition=tuple(facts), unsure=why, add=in_dst is not True)


def _move_all(row: Row, src: Membership, members_of: Lookup,
              protected: frozenset[str]) -> Decision:
    if len(src) == 0:
        # The run reads the source first and does nothing more when it is empty.
        return Decision(Kind.ALREADY, precondition=(Fact(row.group, "", present=False),))
    if protected and src.carries(protected):
        return Decision(Kind.INVALID, "protected")
    dst = members_of(row.to_group)
    if isinstance(dst, Unreadable):
        return Decision(Kind.FAIL, dst.reason)
    return Decision(Kind.CHANGE, precondition=(Fact(row.group, "", present=True),))


def judge(row: Row, members_of: Lookup, *, protected: frozenset[str] = frozenset(),
          unsure: str = "the member list cannot tell") -> Decision:
    """The decision both adapters share: from the groups' memberships alone. `unsure` is
    the adapter's words for a member its read cannot place."""
    src = members_of(row.group)
    if isinstance(src, Unreadable):
        return Decision(Kind.FAIL, src.reason)
    if row.op is Op.REMOVE:
        return _single(row, src, add=False, unsure=unsure)
    if row.op is Op.ADD:
        return _single(row, src, add=True, unsure=unsure)
    if row.op is Op.MOVE_ALL:
        return _move_all(row, src, members_of, protected)
    if row.op is Op.MOVE:
        dst = members_of(row.to_group)
        if isinstance(dst, Unreadable):
            return Decision(Kind.FAIL, dst.reason)
        return _move(row, src, dst, unsure=unsure)
    return Decision(Kind.FAIL, f"unsupported op {row.op!r}")


NO_PRECHECK = "precheck is off: the run sends it without looking at the membership"


def unchecked(decision: Decision, row: Row, *, already_is_ok: bool) -> Decision:
    """What a run without precheck meets instead of `decision`: it sends every remove, add
    and move. A move of someone in neither group then adds the member to `to_group` (both
    APIs); where the API's answer cannot tell "already" from "done" (`already_is_ok`:
    DocSpace), an already-done row is recorded as a change too."""
    if row.op is Op.MOVE_ALL or not decision.precondition:
        return decision  # move_all reads anyway; an unreadable group fails either way
    neither = decision.kind is Kind.FAIL and row.op is Op.MOVE and all(
        not f.present for f in decision.precondition)
    if neither or (already_is_ok and decision.kind is Kind.ALREADY):
        return Decision(Kind.CHANGE, unsure=NO_PRECHECK)
    return decision


def effect(row: Row, members_of: Lookup) -> None:
    """Make a CHANGE row's change in the memberships, so that later rows see it."""
    src = members_of(row.group)
    if isinstance(src, Unreadable):
        return
    if row.op is Op.REMOVE:
        src.discard(row.member)
    elif row.op is Op.ADD:
        src.add(row.member)
    elif row.op in (Op.MOVE, Op.MOVE_ALL):
        dst = members_of(row.to_group)
        if isinstance(dst, Unreadable):
            return
        names = [row.member] if row.op is Op.MOVE else src.names()
        for name in names:
            if dst.has(name) is not True:
                dst.add(name)
            src.discard(name)
