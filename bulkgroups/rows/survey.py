"""An offline look at a job's rows: what they hold and which are bad (validate, --dry-run).
It counts what `rows.source.rows_for` yields, so it classes each row as the run will."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from bulkgroups.model import InvalidRow, Item, Op, Row

# Listing every bad row of a million-row file helps nobody and costs memory.
MAX_LISTED_INVALID = 200


@dataclass(slots=True)
class Survey:
    rows: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    by_group: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    duplicates: int = 0  # later copies of a row: noop, never sent
    listed_invalid: list[InvalidRow] = field(default_factory=list)

    @property
    def valid(self) -> int:
        """Rows that would be sent: neither invalid nor a duplicate."""
        return self.rows - self.invalid - self.duplicates

    @property
    def exit_code(self) -> int:
        """As the run would exit on these rows alone: 1 when some are invalid."""
        return 1 if self.invalid else 0

    def member_changes(self) -> int:
        """Member changes the valid rows ask for at least: a move is two (add, then remove); a
        move_all counts one, its members being unknown until the group is read."""
        per_op = {Op.REMOVE: 1, Op.ADD: 1, Op.MOVE: 2, Op.MOVE_ALL: 1}
        return sum(per_op[Op(op)] * n for op, n in self.by_op.items())


def survey(items: Iterable[Item]) -> Survey:
    s = Survey()
    for item in items:
        s.rows += 1
        if isinstance(item, Row):
            s.by_op[item.op.value] += 1
            s.by_group[item.group] += 1
        elif not isinstance(item, InvalidRow):
            s.duplicates += 1
        else:
            s.invalid += 1
            if len(s.listed_invalid) < MAX_LISTED_INVALID:
                s.listed_invalid.append(item)
    return s
