"""The rows `apply` runs: the plan's lines turned back into what a run takes. A planned
change is sent (as a `CheckedRow`, re-checked at send time); every other decision is
recorded as planned, without a request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bulkgroups.model import InvalidRow, Item, Op, SkippedRow, Status
from bulkgroups.planning.checks import CheckedRow
from bulkgroups.planning.planfile import PlanFileError, PlannedRow, read_rows

_OPS = {op.value: op for op in Op}


def plan_items(path: Path) -> Iterator[Item]:
    """Raises PlanFileError on a line that cannot be trusted (the whole plan is refused
    before anything is sent: callers read it through once first, see `check_plan`)."""
    for p in read_rows(path):
        yield _item(path, p)


def check_plan(path: Path) -> int:
    """Reads the whole plan once, before a request: returns its row count."""
    return sum(1 for _ in plan_items(path))


def _item(path: Path, p: PlannedRow) -> Item:
    if p.decision == "invalid":
        return InvalidRow(p.row, p.line, p.reason or "invalid", p.op, p.group, p.member,
                          p.to_group)
    op = _OPS.get(p.op)
    if op is None:
        raise PlanFileError(path, f"row {p.row}: unknown op {p.op!r}")
    if p.decision == "change":
        return CheckedRow(p.row, p.line, op, p.group, p.member, p.to_group, pre=p.pre)
    status = Status.NOOP if p.decision == "already" else Status.FAILED
    why = p.reason or ("already done when the plan was made" if status is Status.NOOP
                       else "planned to fail")
    return SkippedRow(p.row, p.line, op, p.group, p.member, p.to_group, reason=why,
                      status=status)
