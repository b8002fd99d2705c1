"""The per-group guard: a run may not empty a group by accident.

Google's directory sync refuses a sync that would delete more than a share of the objects;
this is the same rail per group. It is pure: the caller counts, from the decisions, how many
members each group would lose, and passes the sizes as read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GroupOverLimit:
    group: str
    size: int  # members as read
    removing: int  # members the run would take out of it

    @property
    def share(self) -> float:
        return self.removing / self.size if self.size else 1.0

    def describe(self, name: str | None = None) -> str:
        label = f"{name} ({self.group})" if name and name != self.group else self.group
        return (f"{label}: would remove {self.removing:,} of {self.size:,} members "
                f"({self.share:.0%})")


def takes_out(op: str, decision: str) -> bool:
    """Whether a row takes its member out of its group, as the guard counts removals. A
    move_all is not counted: emptying its group is what the row says, in one line a reviewer
    sees; the guard is for the many single removals of a runaway export."""
    return decision == "change" and op in ("remove", "move")


def over_limit(
    removals: Mapping[str, int],
    sizes: Mapping[str, int],
    *,
    max_share: float,
    min_size: int,
) -> list[GroupOverLimit]:
    """Groups of at least `min_size` members (as read) that would lose more than `max_share`
    of them, largest share first. A group whose size is unknown is not judged here: the
    plan says it could not be read."""
    out = [
        GroupOverLimit(group, sizes[group], n)
        for group, n in removals.items()
        if group in sizes and sizes[group] >= min_size and n > max_share * sizes[group]
    ]
    return sorted(out, key=lambda g: (-g.share, g.group))


def refusal_text(groups: Iterable[GroupOverLimit], *, max_share: float,
                 names: Mapping[str, str] | None = None) -> str:
    lines = [g.describe((names or {}).get(g.group)) for g in groups]
    return (f"the run would remove more than {max_share:.0%} of these groups' members "
            f"(max_group_removal): " + "; ".join(lines)
            + " (check the input; raise [safety] max_group_removal or pass --yes to allow it)")
