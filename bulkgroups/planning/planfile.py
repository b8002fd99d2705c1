"""The saved plan: a JSONL file whose first line describes the plan and whose other lines are
one decision per input row, with the precondition the decision rests on.

`plan -o` writes it, `plan --show` prints it, `apply` runs it. It is read back strictly: a
plan that cannot be trusted line by line is refused whole (exit 2), never half-applied."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from bulkgroups.targets.decision import Fact

FORMAT = 1
Decision = Literal["change", "already", "fail", "invalid"]
DECISIONS: frozenset[str] = frozenset({"change", "already", "fail", "invalid"})


class PlanFileError(Exception):
    """A plan file that cannot be used; the message names the file and, where it can, the
    line."""

    def __init__(self, path: Path, problem: str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


def fact_to_json(f: Fact) -> dict[str, Any]:
    return {"group": f.group, "member": f.member, "present": f.present}


def fact_from_json(obj: object) -> Fact:
    if not isinstance(obj, dict):
        raise ValueError("a precondition must be an object")
    group, member, present = obj.get("group"), obj.get("member", ""), obj.get("present")
    if not isinstance(group, str) or not group or not isinstance(member, str) \
            or not isinstance(present, bool):
        raise ValueError("a precondition needs a group, a member (\"\" for the group as a "
                         "whole) and present true/false")
    return Fact(group, member, present)


@dataclass(frozen=True, slots=True)
class PlannedRow:
    row: int
    line: int
    op: str
    group: str
    member: str
    to_group: str
    decision: Decision
    reason: str = ""
    pre: tuple[Fact, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "row": self.row, "line": self.line, "op": self.op, "group": self.group,
            "member": self.member, "to_group": self.to_group, "decision": self.decision,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.pre:
            out["pre"] = [fact_to_json(f) for f in self.pre]
        return out


@dataclass(frozen=True, slots=True)
class PlanHeader:
    job: str  # the job file, absolute
    job_sha256: str
    target: dict[str, str]  # kind, base_url
    input: str  # the input file, absolute
    input_fingerprint: dict[str, Any]  # size, sha256
    read_at: str
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # group -> digest, size, name
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"bulkgroups_plan": FORMAT, "job": self.job, "job_sha256": self.job_sha256,
                "target": self.target, "input": self.input,
                "input_fingerprint": self.input_fingerprint, "read_at": self.read_at,
                "groups": self.groups, "counts": self.counts}


@contextlib.contextmanager
def plan_writer(path: Path) -> Iterator[IO[bytes]]:
    """A plan is written whole or not at all (a temporary file renamed over `path`), readable
    by the owner only: it names members of production groups."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_plan(path: Path, header: PlanHeader, rows: Iterable[PlannedRow]) -> int:
    """Writes a whole plan; returns the rows written."""
    n = 0
    with plan_writer(path) as f:
        f.write(orjson.dumps(header.to_json()) + b"\n")
        for r in rows:
            f.write(orjson.dumps(r.to_json()) + b"\n")
            n += 1
    return n


def read_header(path: Path) -> PlanHeader:
    for header in _read(path, header_only=True):
        assert isinstance(header, PlanHeader)
        return header
    raise PlanFileError(path, "is empty: not a plan file")


def read_rows(path: Path) -> Iterator[PlannedRow]:
    for item in _read(path, header_only=False):
        if isinstance(item, PlannedRow):
            yield item


def _read(path: Path, *, header_only: bool) -> Iterator[PlanHeader | PlannedRow]:
    try:
        f = path.open("rb")
    except OSError as exc:
        raise PlanFileError(path, exc.strerror or "cannot be read") from None
    n = 0
    with f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                raise PlanFileError(path, "line cut short: the plan file is incomplete",
                                    line=n)
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise PlanFileError(path, "not JSON: not a plan file", line=n) from None
            if n == 1:
                yield _header(path, obj)
                if header_only:
                    return
                continue
            yield _row(path, n, obj)
    if n == 0:
        raise PlanFileError(path, "is empty: not a plan file")


def _header(path: Path, obj: Any) -> PlanHeader:
    if not isinstance(obj, dict) or obj.get("bulkgroups_plan") != FORMAT:
        raise PlanFileError(path, "not a bulkgroups plan file (its first line does not "
                            "describe a plan)", line=1)
    try:
        return PlanHeader(
            job=_s(obj, "job"), job_sha256=_s(obj, "job_sha256"),
            target=_d(obj, "target"), input=_s(obj, "input"),
            input_fingerprint=_d(obj, "input_fingerprint"), read_at=_s(obj, "read_at"),
            groups=_d(obj, "groups"), counts=_d(obj, "counts"),
        )
    except ValueError as exc:
        raise PlanFileError(path, str(exc), line=1) from None


def _row(path: Path, n: int, obj: Any) -> PlannedRow:
    try:
        if not isinstance(obj, dict):
            raise ValueError("a plan line must be an object")
        decision = _s(obj, "decision")
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        pre = obj.get("pre", [])
        if not isinstance(pre, list):
            raise ValueError("`pre` must be a list")
        row, line = obj.get("row"), obj.get("line")
        if type(row) is not int or type(line) is not int or row < 1 or line < 1:
            raise ValueError("`row` and `line` must be positive integers")
        return PlannedRow(
            row=row, line=line, op=_s(obj, "op", empty=True), group=_s(obj, "group", empty=True),
            member=_s(obj, "member", empty=True), to_group=_s(obj, "to_group", empty=True),
            decision=decision,  # type: ignore[arg-type]  # checked against DECISIONS
            reason=obj.get("reason", "") if isinstance(obj.get("reason", ""), str) else "",
            pre=tuple(fact_from_json(c) for c in pre),
        )
    except ValueError as exc:
        raise PlanFileError(path, str(exc), line=n) from None


def _s(obj: dict[str, Any], key: str, *, empty: bool = False) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or (not v and not empty):
        raise ValueError(f"`{key}` must be a{'' if empty else ' non-empty'} string")
    return v


def _d(obj: dict[str, Any], key: str) -> dict[str, Any]:
    v = obj.get(key)
    if not isinstance(v, dict):
        raise ValueError(f"`{key}` must be an object")
    return v
