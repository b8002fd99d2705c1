"""The rails a nightly job needs: ids never touched, and a cap on how much one run changes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from bulkgroups.identity import norm_id
from bulkgroups.model import InvalidRow, Item, Row


def guard(
    items: Iterable[Row | InvalidRow], protected: frozenset[str]
) -> Iterator[Row | InvalidRow]:
    """Rows naming a protected id in any column become invalid with the reason `protected`
    (the id is not repeated, so a report groups them all). `protected` holds `norm_id` forms."""
    if not protected:
        yield from items
        return
    for item in items:
        if isinstance(item, Row) and any(
            v and norm_id(v) in protected for v in (item.group, item.member, item.to_group)
        ):
            yield InvalidRow(
                row=item.row, line=item.line, reason="protected", op=item.op.value,
                group=item.group, member=item.member, to_group=item.to_group,
            )
        else:
            yield item


def count_changes(items: Iterable[Item]) -> int:
    """Rows that would change something: every valid row counts one; streams, holds nothing."""
    return sum(1 for item in items if isinstance(item, Row))
