"""What the engine needs of a target."""

from __future__ import annotations

from typing import Protocol

from bulkgroups.model import Result, Row


class Target(Protocol):
    async def apply(self, row: Row) -> Result:
        """Carry out one row; every outcome but a refused credential is a Result."""
        ...
