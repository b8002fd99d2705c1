"""What the engine needs of a target."""

from __future__ import annotations

from typing import Protocol

from bulkgroups.model import Result, Row
from bulkgroups.targets.decision import Decision, Lookup, Membership, OnRead, Unreadable


class Target(Protocol):
    async def apply(self, row: Row) -> Result:
        """Carry out one row; every outcome but a refused credential is a Result."""
        ...

    def abandon(self) -> None:
        """The run is stopping: start no new attempt and wait out no pause; a row whose
        request was not sent gets no outcome (resume sends it)."""
        ...


class Adapter(Target, Protocol):
    """A target that can also say, without changing anything, what a row needs: `plan`
    reads through `membership` and tallies `decide`; `apply` calls the same `decide` after
    its own precheck read."""

    # Told of every group the adapter reads, as read: a run's snapshots (exact undo).
    on_read: OnRead | None

    async def membership(self, group: str) -> Membership | Unreadable:
        """One group's members, read the way the precheck reads them."""
        ...

    def decide(self, row: Row, members_of: Lookup) -> Decision:
        """What `row` needs, given the groups' members (pure)."""
        ...
