"""What the engine needs of a target."""

from __future__ import annotations

from typing import Protocol

from bulkgroups.model import Result, Row


class Target(Protocol):
    async def apply(self, row: Row) -> Result:
        """Carry out one row; every outcome but a refused credential is a Result."""
        ...

    def abandon(self) -> None:
        """The run is stopping: start no new attempt and wait out no pause; a row whose
        request was not sent gets no outcome (resume sends it)."""
        ...
