"""Rows in, outcomes out: the values every other module passes around."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class Op(StrEnum):
    REMOVE = "remove"
    MOVE = "move"
    MOVE_ALL = "move_all"
    ADD = "add"


class Status(StrEnum):
    OK = "ok"
    NOOP = "noop"
    INVALID = "invalid"
    PENDING = "pending"
    FAILED = "failed"
    # `apply` found the row's planned precondition no longer true and sent nothing.
    STALE = "stale"

    @property
    def is_final(self) -> bool:
        """Final outcomes are never re-sent by `resume`."""
        return self is not Status.FAILED

    @property
    def needs_attention(self) -> bool:
        """Outcomes that make a run's exit status 1."""
        return self in (Status.FAILED, Status.INVALID, Status.STALE)


class Abandoned(Exception):
    """The run is stopping and this row's request was never sent: the row gets no outcome,
    so a resume sends it (the stop contract, see `Target.abandon`)."""


class TargetKind(StrEnum):
    DOCSPACE = "docspace"
    ADAXES = "adaxes"


def row_key(op: str, group: str, member: str, to_group: str) -> str:
    """Stable hash of a row's content: the same row has the same key in every run."""
    raw = "\x1f".join((op, group, member, to_group)).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Row:
    """A row that passed validation and may reach the network."""

    row: int  # 1-based record number in the input
    line: int  # line in the input where the record starts
    op: Op
    group: str
    member: str = ""
    to_group: str = ""

    @property
    def key(self) -> str:
        return row_key(self.op, self.group, self.member, self.to_group)


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A record that could not be read or failed validation; it never reaches the network."""

    row: int
    line: int
    reason: str
    op: str = ""
    group: str = ""
    member: str = ""
    to_group: str = ""

    @property
    def key(self) -> str:
        return row_key(self.op, self.group, self.member, self.to_group)


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A valid row whose outcome is known without a request (a duplicate of an earlier row);
    it never reaches the network."""

    row: int
    line: int
    op: Op
    group: str
    member: str
    to_group: str
    reason: str  # e.g. "duplicate of row 12"
    status: Status = Status.NOOP

    @property
    def key(self) -> str:
        return row_key(self.op, self.group, self.member, self.to_group)


@dataclass(frozen=True, slots=True)
class Result:
    """What a target adapter says happened to one row."""

    status: Status
    http_status: int | None = None
    attempts: int = 0
    error: str | None = None
    # move_all: who left `group` and joined `to_group` (`moved`), and who left `group` without
    # joining (`left`: already in `to_group`, or a DocSpace guest), so `undo` is exact.
    moved: tuple[str, ...] | None = None
    left: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One line of the results file: the final word on one input row in one run."""

    row: int
    line: int
    key: str
    op: str
    group: str
    member: str
    to_group: str
    status: Status
    http_status: int | None
    attempts: int
    error: str | None
    elapsed_ms: float
    finished_at: str
    moved: tuple[str, ...] | None = None
    left: tuple[str, ...] | None = None

    @classmethod
    def of(cls, row: Row, result: Result, *, elapsed_ms: float, finished_at: str) -> Outcome:
        return cls(
            row=row.row,
            line=row.line,
            key=row.key,
            op=row.op.value,
            group=row.group,
            member=row.member,
            to_group=row.to_group,
            status=result.status,
            http_status=result.http_status,
            attempts=result.attempts,
            error=result.error,
            elapsed_ms=elapsed_ms,
            finished_at=finished_at,
            moved=result.moved,
            left=result.left,
        )

    @classmethod
    def settled(cls, item: InvalidRow | SkippedRow, *, finished_at: str) -> Outcome:
        """The outcome of a row decided without a request: `attempts` 0, the reason in
        `error` (the one free-text field a results line has)."""
        return cls(
            row=item.row,
            line=item.line,
            key=item.key,
            op=str(item.op),
            group=item.group,
            member=item.member,
            to_group=item.to_group,
            status=Status.INVALID if isinstance(item, InvalidRow) else item.status,
            http_status=None,
            attempts=0,
            error=item.reason,
            elapsed_ms=0.0,
            finished_at=finished_at,
        )


# What a reader and its filters hand the engine: a row to send, or one already decided.
Item = Row | InvalidRow | SkippedRow
