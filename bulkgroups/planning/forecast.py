"""`bulkgroups plan`: what a job would do to the live groups, without changing anything.

Every group the rows name is read once, through the run's own adapter (`membership`: the
read its precheck makes; GETs only, paced at the job's rate). Then each row is decided by the
adapter's own `decide` — the same pure function `run` calls after its precheck — in input
order, each change applied (`effect`) before the next row, so that a duplicate row, or a
removal followed by an add, reads the way the run will meet it. This module only tallies:
it holds no HTTP code, no API path and no rule of either API.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bulkgroups.identity import norm_id
from bulkgroups.job import Job
from bulkgroups.model import InvalidRow, Item, Row, SkippedRow, TargetKind
from bulkgroups.rows.guard import count_changes
from bulkgroups.rows.source import rows_for
from bulkgroups.targets.base import Adapter
from bulkgroups.targets.connect import connect, endpoint_for
from bulkgroups.targets.decision import Decision, Kind, Lookup, Membership, Unreadable, effect

Decide = Callable[[Row, Lookup], Decision]
# Sees each row's decision, with the memberships as they stand just before the row's change
# (a saved plan writes it down; the group guard counts the removals).
Record = Callable[[Item, Decision, Lookup], None]


class Snapshot:
    """The memberships read, looked up by any spelling of a group (`norm_id`)."""

    __slots__ = ("_groups",)

    def __init__(self, groups: Mapping[str, Membership | Unreadable]) -> None:
        self._groups = {norm_id(g): m for g, m in groups.items()}

    def __call__(self, group: str) -> Membership | Unreadable:
        found = self._groups.get(norm_id(group))
        return found if found is not None else Unreadable(f"group {group} was not read")

    def __len__(self) -> int:
        return len(self._groups)


# --- the tally -----------------------------------------------------------------------------


@dataclass(slots=True)
class Counts:
    change: int = 0
    already: int = 0
    fail: int = 0
    invalid: int = 0

    def add(self, what: Kind) -> None:
        setattr(self, what.value, getattr(self, what.value) + 1)

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
    # Rows counted as change whose outcome the read cannot tell, by why (business rules,
    # a SID the list did not carry, hidden members that could not be read).
    unsure: Counter[str] = field(default_factory=Counter)
    protected: int = 0
    groups_read: int = 0
    names: dict[str, str] = field(default_factory=dict)  # norm_id(group) -> display name

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
            "unsure": dict(self.unsure),
            "safety": {
                "max_changes": self.max_changes,
                "changes": self.changes,
                "would_refuse": self.would_refuse,
                "protected": self.protected,
            },
        }

    def count(self, item: Item, decision: Decision, label: str | None) -> None:
        self.total.add(decision.kind)
        if label is not None:
            self.groups.setdefault(label, Counts()).add(decision.kind)
        if decision.kind is Kind.FAIL:
            self.failures[decision.reason or "unknown"] += 1
        elif decision.kind is Kind.INVALID:
            self.invalid_reasons[decision.reason or "invalid"] += 1
            self.protected += decision.reason == "protected"
        elif decision.kind is Kind.CHANGE and decision.unsure is not None:
            self.unsure[decision.unsure] += 1


def tally(
    items: Iterable[Item],
    members_of: Lookup,
    decide: Decide,
    *,
    max_changes: int,
    changes: int,
    record: Record | None = None,
) -> Plan:
    """Decide every row in input order, applying each change before the next row."""
    plan = Plan(max_changes=max_changes, changes=changes)
    names: dict[str, str] = {}  # norm_id -> the spelling shown
    for item in items:
        label = names.setdefault(norm_id(item.group), item.group.strip()) \
            if item.group.strip() else None
        if isinstance(item, InvalidRow):
            invalid = Decision(Kind.INVALID, item.reason)
            plan.count(item, invalid, label)
            if record is not None:
                record(item, invalid, members_of)
            continue
        if isinstance(item, SkippedRow):  # a copy of an earlier row: the run's noop
            already = Decision(Kind.ALREADY, item.reason)
            plan.count(item, already, label)
            if record is not None:  # a plan holds every input row: apply gives each its outcome
                record(item, already, members_of)
            continue
        decision = decide(item, members_of)
        plan.count(item, decision, label)
        if record is not None:
            record(item, decision, members_of)
        if decision.kind is Kind.CHANGE:
            effect(item, members_of)
    return plan


# --- text ----------------------------------------------------------------------------------


def _with_name(group: str, names: Mapping[str, str]) -> str:
    name = names.get(norm_id(group))
    return f"{group} ({name})" if name and name != group else group


def render_text(plan: Plan, *, job: str, kind: TargetKind, target: str) -> str:
    cols = ("change", "already", "fail", "invalid")
    shown = {g: _with_name(g, plan.names) for g in plan.groups}
    width = max([len("group"), len("total"), *(len(s) for s in shown.values())])
    lines = [
        f"plan for job {job} ({target}): read {plan.groups_read:,} groups, changed nothing",
        "",
        "group".ljust(width) + "".join(f"  {c:>8}" for c in cols),
    ]

    def row(name: str, c: Counts) -> str:
        values = c.to_json()
        return name.ljust(width) + "".join(f"  {values[k]:>8,}" for k in cols)

    lines += [row(shown[g], c) for g, c in plan.groups.items()]
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
        lines += ["", "counted as change, but the read cannot tell how they end:"]
        lines += [f"  {n:>6,}  {why}" for why, n in plan.unsure.most_common(10)]
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


async def read_groups(
    target: Adapter, groups: Iterable[str], *, workers: int
) -> dict[str, Membership | Unreadable]:
    """Every group once; the adapter's pacer keeps the reads at the job's rate."""
    todo = list(groups)
    queue = iter(todo)  # shared by the workers: each takes the next group
    out: dict[str, Membership | Unreadable] = {}

    async def work() -> None:
        for group in queue:
            out[group] = await target.membership(group)

    await asyncio.gather(*(work() for _ in range(max(1, min(workers, len(todo))))))
    return out


def _rows(job: Job) -> Iterator[Item]:
    return rows_for(job)  # the rows `run` takes: guarded and deduplicated (rows.source)


def _noting_groups(
    items: Iterable[Item], seen: dict[str, str]
) -> Iterator[Item]:
    for item in items:
        if isinstance(item, Row):
            for g in (item.group, item.to_group):
                if g:
                    seen.setdefault(norm_id(g), g)
        yield item


async def make_plan(
    job: Job,
    *,
    environ: Mapping[str, str],
    record: Record | None = None,
    on_read: Callable[[Mapping[str, Membership | Unreadable]], None] | None = None,
) -> Plan:
    """Read the input twice (once for the groups, once to decide) and every group once.
    Raises JobError, InputError, or AuthRefused when the credentials are
    refused; sends nothing but GETs."""
    if job.input.select is not None:  # export's hook: plan the rows the selection finds now
        from bulkgroups.export.write import to_temp

        async with to_temp(job, environ=environ) as (exported, _):
            return await make_plan(exported, environ=environ, record=record, on_read=on_read)
    groups: dict[str, str] = {}
    changes = count_changes(_noting_groups(_rows(job), groups))
    async with endpoint_for(job, environ=environ) as endpoint, connect(job, endpoint) as target:
        read = await read_groups(target, groups.values(), workers=job.limits.concurrency)
        if on_read is not None:
            on_read(read)  # before any row's change is applied to the reads
        snapshot = Snapshot(read)
        plan = tally(_rows(job), snapshot, target.decide,
                     max_changes=job.safety.max_changes, changes=changes, record=record)
    plan.groups_read = len(read)
    plan.names = {norm_id(g): m.name for g, m in read.items()
                  if not isinstance(m, Unreadable) and m.name}
    return plan
