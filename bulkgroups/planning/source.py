"""The rows `apply` runs: the plan's lines turned back into what a run takes. A planned
change is sent (as a `CheckedRow`, re-checked at send time); every other decision is
recorded as planned, without a request."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bulkgroups.identity import norm_id
from bulkgroups.job import Job
from bulkgroups.model import InvalidRow, Item, Op, SkippedRow, Status
from bulkgroups.planning.checks import CheckedRow
from bulkgroups.planning.group_guard import GroupOverLimit, over_limit, takes_out
from bulkgroups.planning.planfile import PlanFileError, PlanHeader, PlannedRow, read_rows

_OPS = {op.value: op for op in Op}


def plan_items(path: Path, *, resumed: bool = False) -> Iterator[Item]:
    """Raises PlanFileError on a line that cannot be trusted (the whole plan is refused
    before anything is sent: callers read it through once first, see `check_plan`)."""
    for p in read_rows(path):
        yield _item(path, p, resumed=resumed)


def check_plan(path: Path) -> int:
    """Reads the whole plan once, before a request: returns its row count."""
    return sum(1 for _ in plan_items(path))


def _item(path: Path, p: PlannedRow, *, resumed: bool) -> Item:
    if p.decision == "invalid":
        return InvalidRow(p.row, p.line, p.reason or "invalid", p.op, p.group, p.member,
                          p.to_group)
    op = _OPS.get(p.op)
    if op is None:
        raise PlanFileError(path, f"row {p.row}: unknown op {p.op!r}")
    if p.decision == "change":
        return CheckedRow(p.row, p.line, op, p.group, p.member, p.to_group, pre=p.pre,
                          resumed=resumed)
    status = Status.NOOP if p.decision == "already" else Status.FAILED
    why = p.reason or ("already done when the plan was made" if status is Status.NOOP
                       else "planned to fail")
    return SkippedRow(p.row, p.line, op, p.group, p.member, p.to_group, reason=why,
                      status=status)


def plan_over_limit(path: Path, header: PlanHeader, job: Job) -> list[GroupOverLimit]:
    """The group guard on a saved plan: its change rows' removals against the groups' sizes
    as the plan read them (no request)."""
    sizes = {norm_id(g): int(v["size"]) for g, v in header.groups.items()
             if isinstance(v, dict) and type(v.get("size")) is int}
    removals: Counter[str] = Counter()
    spelled: dict[str, str] = {}
    for p in read_rows(path):
        if not takes_out(p.op, p.decision):
            continue
        removals[norm_id(p.group)] += 1
        spelled.setdefault(norm_id(p.group), p.group)
    s = job.safety
    found = over_limit(removals, sizes, max_share=s.max_group_removal, min_size=s.min_group_size)
    return [GroupOverLimit(spelled.get(g.group, g.group), g.size, g.removing) for g in found]
