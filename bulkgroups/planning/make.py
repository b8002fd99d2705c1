"""Writing a plan file from a job: the live reads and the adapters' decisions of `plan`,
written down row by row with the precondition each decision rests on, plus what the
per-group guard needs (each group's size as read and the removals the plan makes)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from bulkgroups.engine import now_iso
from bulkgroups.identity import norm_id
from bulkgroups.job import Job
from bulkgroups.model import Item, Row
from bulkgroups.planning.checks import file_sha256, membership_digest
from bulkgroups.planning.forecast import Plan, make_plan
from bulkgroups.planning.group_guard import GroupOverLimit, over_limit, takes_out
from bulkgroups.planning.planfile import PlanHeader, PlannedRow, plan_writer
from bulkgroups.results.file import Fingerprint
from bulkgroups.targets.decision import Decision, Lookup, Membership, Unreadable


def header_for(job: Job, *, read_at: str, groups: dict[str, dict[str, object]]) -> PlanHeader:
    fp = Fingerprint.of(job.input.path)
    return PlanHeader(
        job=str(job.path), job_sha256=file_sha256(job.path),
        target={"kind": job.target.kind.value, "base_url": job.target.base_url},
        input=str(job.input.path.resolve()),
        input_fingerprint={"size": fp.size, "sha256": fp.sha256},
        read_at=read_at, groups=groups,
    )


@dataclass(slots=True)
class Recorder:
    """Streams the plan's lines to `out` (the header first, once the groups are read) and
    counts what the group guard needs. `out` None: count only (the guard of a plain run)."""

    job: Job
    out: IO[bytes] | None
    sizes: dict[str, int] = field(default_factory=dict)  # norm_id(group) -> members as read
    removals: Counter[str] = field(default_factory=Counter)
    spelled: dict[str, str] = field(default_factory=dict)  # norm_id -> as the input spells it
    rows: int = 0

    def on_read(self, reads: Mapping[str, Membership | Unreadable]) -> None:
        groups: dict[str, dict[str, object]] = {}
        for group, m in reads.items():
            if isinstance(m, Unreadable):
                groups[group] = {"unreadable": m.reason}
                continue
            self.sizes[norm_id(group)] = len(m)
            groups[group] = {"size": len(m),
                             "digest": membership_digest(norm_id(n) for n in m.names())}
        if self.out is not None:
            header = header_for(self.job, read_at=now_iso(), groups=groups)
            self.out.write(orjson.dumps(header.to_json()) + b"\n")

    def record(self, item: Item, decision: Decision, members_of: Lookup) -> None:
        if isinstance(item, Row) and takes_out(item.op.value, decision.kind.value):
            key = norm_id(item.group)
            self.removals[key] += 1
            self.spelled.setdefault(key, item.group)
        if self.out is None:
            return
        line = PlannedRow(
            row=item.row, line=item.line, op=str(item.op), group=item.group,
            member=item.member, to_group=item.to_group, decision=decision.kind.value,
            reason=decision.reason or decision.unsure or "", pre=decision.precondition,
        )
        self.out.write(orjson.dumps(line.to_json()) + b"\n")
        self.rows += 1

    def over_limit(self) -> list[GroupOverLimit]:
        s = self.job.safety
        found = over_limit(self.removals, self.sizes, max_share=s.max_group_removal,
                           min_size=s.min_group_size)
        return [GroupOverLimit(self.spelled.get(g.group, g.group), g.size, g.removing)
                for g in found]


@dataclass(frozen=True, slots=True)
class Saved:
    plan: Plan
    path: Path | None
    over_limit: list[GroupOverLimit]


async def plan_job(job: Job, *, environ: Mapping[str, str], out: Path | None = None) -> Saved:
    """Read and decide the job (GETs only). With `out`, the plan file is written whole or not
    at all, mode 600. Raises what `make_plan` raises."""
    if out is None:
        rec = Recorder(job, None)
        plan = await make_plan(job, environ=environ, record=rec.record, on_read=rec.on_read)
        return Saved(plan, None, rec.over_limit())
    with plan_writer(out) as f:
        rec = Recorder(job, f)
        plan = await make_plan(job, environ=environ, record=rec.record, on_read=rec.on_read)
    return Saved(plan, out, rec.over_limit())
