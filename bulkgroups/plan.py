"""`bulkgroups plan`: what a job would do to the live groups, without changing anything.

Every group the rows name is read once (GET only, paced at the job's rate). Then each row is
classified against those member lists in input order, as if every earlier change had been
made, so that a duplicate row, or a removal followed by an add, reads the way the run will
meet it. The classification is pure (`judge`, `classify`, `apply`, `tally`); the reads are in
the last section.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from bulkgroups.http.transport import Transport
from bulkgroups.identity import norm_id
from bulkgroups.job import Job
from bulkgroups.model import InvalidRow, Op, Row, TargetKind
from bulkgroups.rows.guard import count_changes, guard
from bulkgroups.rows.readers import read_rows
from bulkgroups.targets.adaxes import Members as AdaxesMembers
from bulkgroups.targets.connect import Endpoint, endpoint_for, open_transport
from bulkgroups.targets.dn import ident
from bulkgroups.targets.docspace import member_ids
from bulkgroups.targets.members import reason

Verdict = Literal["change", "already", "fail", "invalid"]
Key = tuple[str, str]  # (kind of identifier, comparison key)

# --- identifiers ---------------------------------------------------------------------------


def docspace_key(value: str) -> Key:
    return ("id", value.strip().casefold())


def adaxes_key(value: str) -> Key:
    i = ident(value)  # DN normalised, GUID casefolded without braces, SID upper-cased
    return (i.kind.value, i.key)


def key_for(kind: TargetKind) -> Callable[[str], Key]:
    return docspace_key if kind is TargetKind.DOCSPACE else adaxes_key


def group_key(kind: TargetKind, group: str) -> str:
    """One string per group, however the input spells it (case, DN spacing, GUID braces)."""
    k = key_for(kind)(group)
    return f"{k[0]}:{k[1]}"


# --- member lists --------------------------------------------------------------------------


@dataclass(slots=True)
class Member:
    name: str
    keys: dict[str, str]  # identifier kind -> comparison key, for the kinds the list gave


class GroupMembers:
    """One group's direct members as read, changed in place as the plan's rows are applied."""

    __slots__ = ("_key", "members")

    def __init__(self, members: Iterable[Member], key: Callable[[str], Key]) -> None:
        self.members = list(members)
        self._key = key

    def has(self, member: str) -> bool | None:
        """True/False when the list settles it; None when some member lacks this kind of
        identifier (a row names a SID that the list does not carry)."""
        kind, key = self._key(member)
        unsure = False
        for m in self.members:
            have = m.keys.get(kind)
            if have is None:
                unsure = True
            elif have == key:
                return True
        return None if unsure else False

    def add(self, member: str) -> None:
        if self.has(member) is not True:
            kind, key = self._key(member)
            self.members.append(Member(member, {kind: key}))

    def discard(self, member: str) -> None:
        kind, key = self._key(member)
        self.members = [m for m in self.members if m.keys.get(kind) != key]

    def __len__(self) -> int:
        return len(self.members)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A group that could not be read; `reason` is what every row naming it fails with."""

    reason: str


MembersOf = Callable[[str], GroupMembers | Unreadable]


# --- classification ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    reason: str | None = None  # why it would fail
    unsure: bool = False  # the member list could not settle it; counted as the run will try


def judge(row: Row, members_of: MembersOf, protected: frozenset[str] = frozenset()
          ) -> Judgement:
    """What the run would do with `row`, given the groups' members: the same decisions the
    target adapters make after their precheck. `protected` holds `norm_id` forms: a
    move_all that would carry a protected member along is refused as `invalid`."""
    src = members_of(row.group)
    if isinstance(src, Unreadable):
        return Judgement("fail", src.reason)
    if row.op is Op.REMOVE:
        present = src.has(row.member)
        return Judgement("already" if present is False else "change", unsure=present is None)
    if row.op is Op.ADD:
        present = src.has(row.member)
        return Judgement("already" if present is True else "change", unsure=present is None)
    if row.op is Op.MOVE_ALL:
        # The run reads the source first and does nothing more when it is empty.
        if len(src) == 0:
            return Judgement("already")
        if protected and any(_is_protected(m, protected) for m in src.members):
            return Judgement("invalid", "protected")
        dst = members_of(row.to_group)
        if isinstance(dst, Unreadable):
            return Judgement("fail", dst.reason)
        return Judgement("change")
    if row.op is Op.MOVE:
        dst = members_of(row.to_group)
        if isinstance(dst, Unreadable):
            return Judgement("fail", dst.reason)
        in_src, in_dst = src.has(row.member), dst.has(row.member)
        if in_src is False and in_dst is True:
            return Judgement("already")
        if in_src is False and in_dst is False:
            return Judgement(
                "fail", f"member is not in group {row.group} (nor in {row.to_group})"
            )
        return Judgement("change", unsure=in_src is None or in_dst is None)
    return Judgement("fail", f"unsupported op {row.op!r}")


def _is_protected(m: Member, protected: frozenset[str]) -> bool:
    return any(norm_id(v) in protected for v in (m.name, *m.keys.values()) if v)


def classify(row: Row, members_of: MembersOf, protected: frozenset[str] = frozenset()
             ) -> Verdict:
    """The verdict alone: change, already or fail ("invalid" only for a move_all that
    would carry a protected member along)."""
    return judge(row, members_of, protected).verdict


def apply(row: Row, members_of: MembersOf) -> None:
    """Make the row's change in the member lists, so that later rows see it."""
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
        if row.op is Op.MOVE:
            dst.add(row.member)
            src.discard(row.member)
        else:
            for m in src.members:
                if not any(d.keys.get(k) == v for d in dst.members for k, v in m.keys.items()):
                    dst.members.append(m)
            src.members = []


class Snapshot:
    """The member lists read, looked up by any spelling of a group."""

    __slots__ = ("_groups", "_kind")

    def __init__(self, kind: TargetKind, groups: Mapping[str, GroupMembers | Unreadable]) -> None:
        self._kind = kind
        self._groups = dict(groups)  # by group_key

    def __call__(self, group: str) -> GroupMembers | Unreadable:
        found = self._groups.get(group_key(self._kind, group))
        return found if found is not None else Unreadable(f"group {group} was not read")


# --- the tally -----------------------------------------------------------------------------


@dataclass(slots=True)
class Counts:
    change: int = 0
    already: int = 0
    fail: int = 0
    invalid: int = 0

    def add(self, what: Verdict) -> None:
        setattr(self, what, getattr(self, what) + 1)

    def to_json(self) -> dict[str, int]:
        return {"change": self.change, "already": self.already, "fail": self.fail,
                "invalid": self.invalid}


@dataclass(slots=True)
class Plan:
    max_changes: int
    changes: int  # rows the run's max_changes rail counts (safety.count_changes)
    total: Counts = field(default_factory=Counts)
    groups: dict[str, Counts] = field(default_factory=dict)  # as the input first names them
    failures: Counter[str] = field(default_factory=Counter)  # reason -> rows
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    protected: int = 0
    unsure: int = 0
    groups_read: int = 0

    @property
    def would_refuse(self) -> bool:
        return self.changes > self.max_changes

    @property
    def exit_code(self) -> int:
        """What the run would most likely exit with, on its rows: 1 when some would fail or
        are invalid, else 0. (The max_changes refusal is reported, not turned into 3.)"""
        return 1 if self.total.fail or self.total.invalid else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total.to_json(),
            "groups": {g: c.to_json() for g, c in self.groups.items()},
            "safety": {
                "max_changes": self.max_changes,
                "changes": self.changes,
                "would_refuse": self.would_refuse,
                "protected": self.protected,
            },
        }


def tally(
    items: Iterable[Row | InvalidRow],
    members_of: MembersOf,
    *,
    kind: TargetKind,
    max_changes: int,
    changes: int,
    protected: frozenset[str] = frozenset(),
) -> Plan:
    """Classify every row in input order, applying each change before the next row."""
    plan = Plan(max_changes=max_changes, changes=changes)
    names: dict[str, str] = {}  # group_key -> the spelling shown
    for item in items:
        label: str | None = None
        if item.group.strip():
            label = names.setdefault(group_key(kind, item.group), item.group.strip())
        per = plan.groups.setdefault(label, Counts()) if label is not None else None
        if isinstance(item, InvalidRow):
            plan.total.add("invalid")
            if per is not None:
                per.add("invalid")
            plan.invalid_reasons[item.reason] += 1
            if item.reason == "protected":
                plan.protected += 1
            continue
        j = judge(item, members_of, protected)
        plan.total.add(j.verdict)
        if per is not None:
            per.add(j.verdict)
        if j.verdict == "fail":
            plan.failures[j.reason or "unknown"] += 1
        elif j.verdict == "invalid":
            plan.invalid_reasons[j.reason or "invalid"] += 1
            plan.protected += j.reason == "protected"
        elif j.verdict == "change":
            plan.unsure += j.unsure
            apply(item, members_of)
    return plan


# --- text ----------------------------------------------------------------------------------


def render_text(plan: Plan, *, job: str, kind: TargetKind, target: str) -> str:
    cols = ("change", "already", "fail", "invalid")
    width = max([len("group"), len("total"), *(len(g) for g in plan.groups)])
    lines = [
        f"plan for job {job} ({target}): read {plan.groups_read:,} groups, changed nothing",
        "",
        "group".ljust(width) + "".join(f"  {c:>8}" for c in cols),
    ]

    def row(name: str, c: Counts) -> str:
        values = c.to_json()
        return name.ljust(width) + "".join(f"  {values[k]:>8,}" for k in cols)

    lines += [row(g, c) for g, c in plan.groups.items()]
    lines.append(row("total", plan.total))
    if plan.failures:
        lines += ["", "would fail:"]
        lines += [f"  {n:>6,}  {why}" for why, n in plan.failures.most_common(20)]
        if len(plan.failures) > 20:
            lines.append(f"  ... and {len(plan.failures) - 20:,} more reasons")
    if plan.invalid_reasons:
        lines += ["", "invalid (never sent; `bulkgroups validate` lists them by line):"]
        lines += [f"  {n:>6,}  {why}" for why, n in plan.invalid_reasons.most_common(10)]
    if plan.unsure:
        lines += ["", f"{plan.unsure:,} rows name a member by an identifier the member list "
                  "did not carry (a SID): counted as change; the run decides when it gets there"]
    if kind is TargetKind.ADAXES and plan.total.change:
        lines += ["", "Adaxes business rules (approval, denial) do not show in a read: a row "
                  "counted as change may end pending or failed"]
    verdict = (
        f"would refuse (exit 3): pass --max-changes {plan.changes} or --yes to allow it"
        if plan.would_refuse else "ok"
    )
    lines += [
        "",
        f"safety: max_changes {plan.max_changes:,}; the run counts {plan.changes:,} rows that "
        f"may change something: {verdict}",
        f"        {plan.protected:,} rows name a protected id or would move one along "
        "(invalid, never sent)",
    ]
    return "\n".join(lines) + "\n"


# --- reading the groups --------------------------------------------------------------------

_DOCSPACE_GROUP = "/api/2.0/group/"
_ADAXES_MEMBERS = "/api/directoryObjects/groupMembers"


@contextlib.asynccontextmanager
async def reader(job: Job, endpoint: Endpoint) -> AsyncIterator[Transport]:
    """A transport for reads: the run's own (session, pacing, retries, sign-in)."""
    async with open_transport(job, endpoint) as t:  # http: one transport (issue 12.5)
        yield t


async def read_group(t: Transport, kind: TargetKind, group: str) -> GroupMembers | Unreadable:
    """One GET: the group's direct members. Neither API pages a member list."""
    key = key_for(kind)
    if kind is TargetKind.DOCSPACE:
        reply = await t.send("GET", _DOCSPACE_GROUP + quote(group.strip(), safe=""))
        ids = member_ids(reply.body) if reply.ok else None
        if ids is not None:
            return GroupMembers((Member(i, {"id": i.strip().casefold()}) for i in ids), key)
    else:
        # objectSid lets rows that name members by SID be settled too, when the server
        # lists it.
        params = {"group": group, "properties": "objectSid"}
        reply = await t.send("GET", _ADAXES_MEMBERS, params=params)
        parsed = AdaxesMembers.parse(reply.body) if reply.ok else None
        if parsed is not None:
            return GroupMembers(
                (Member(e.name, {k.value: v for k, v in e.keys.items()}) for e in parsed.entries),
                key,
            )
    if reply.status == 404:
        return Unreadable(f"group {group} not found (404)")
    if reply.ok:
        return Unreadable(f"unexpected answer reading group {group}")
    return Unreadable(f"cannot read group {group}: {reason(reply)}")


async def read_groups(
    t: Transport, kind: TargetKind, groups: Iterable[str], *, workers: int
) -> dict[str, GroupMembers | Unreadable]:
    """Every group once, by group_key; the pacer keeps the reads at the job's rate."""
    todo = list(groups)
    queue = iter(todo)  # shared by the workers: each takes the next group
    out: dict[str, GroupMembers | Unreadable] = {}

    async def work() -> None:
        for group in queue:
            out[group_key(kind, group)] = await read_group(t, kind, group)

    await asyncio.gather(*(work() for _ in range(max(1, min(workers, len(todo))))))
    return out


def _rows(job: Job) -> Iterator[Row | InvalidRow]:
    return guard(
        read_rows(job.input.path, fmt=job.input.format, kind=job.target.kind,
                  default_op=job.input.op),
        job.safety.protected,
    )


def _noting_groups(
    items: Iterable[Row | InvalidRow], kind: TargetKind, seen: dict[str, str]
) -> Iterator[Row | InvalidRow]:
    for item in items:
        if isinstance(item, Row):
            for g in (item.group, item.to_group):
                if g:
                    seen.setdefault(group_key(kind, g), g)
        yield item


async def make_plan(job: Job, *, environ: Mapping[str, str]) -> Plan:
    """Read the input twice (once for the groups, once to classify) and every group once.
    Raises JobError, InputError, or AuthRefused when the credentials are
    refused; sends nothing but GETs."""
    if job.input.select is not None:  # export's hook: plan the rows the selection finds now
        from bulkgroups.export.write import to_temp

        async with to_temp(job, environ=environ) as (exported, _):
            return await make_plan(exported, environ=environ)
    kind = job.target.kind
    groups: dict[str, str] = {}
    changes = count_changes(_noting_groups(_rows(job), kind, groups))
    async with endpoint_for(job, environ=environ) as endpoint, reader(job, endpoint) as t:
        read = await read_groups(t, kind, groups.values(), workers=job.limits.concurrency)
    plan = tally(_rows(job), Snapshot(kind, read), kind=kind,
                 max_changes=job.safety.max_changes, changes=changes,
                 protected=job.safety.protected)
    plan.groups_read = len(read)
    return plan
