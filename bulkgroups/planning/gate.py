"""Before a run sends anything: whether a person must look first.

A run stops (exit 3) with a plan written beside its results when the job asks for approval,
when `max_changes` would be exceeded, or when a group would lose more than
`max_group_removal` of its members; the operator reads the plan (`plan --show`) and applies
it (`apply`) or throws it away. A plan is the same reads and decisions `plan` makes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bulkgroups.job import Job
from bulkgroups.planning.group_guard import GroupOverLimit, refusal_text
from bulkgroups.planning.make import plan_job


def plan_path(results: Path) -> Path:
    name = results.name[: -len(".jsonl")] if results.name.endswith(".jsonl") else results.name
    return results.with_name(f"{name}.plan.jsonl")


@dataclass(frozen=True, slots=True)
class Held:
    """The run is held for a person: `why`, and the plan that was written for review."""

    why: str
    plan: Path

    def message(self) -> str:
        return (f"{self.why}. Nothing was sent. The plan is in {self.plan}: review it with "
                f"`bulkgroups plan --show {self.plan}`, then carry it out with "
                f"`bulkgroups apply {self.plan}` (or delete it)")


def guard_active(job: Job) -> bool:
    return job.safety.max_group_removal < 1.0


async def hold_for_review(job: Job, *, results: Path, environ: Mapping[str, str],
                          why_first: str | None = None, guard: bool = True) -> Held | None:
    """Plans the job (GETs only) when it must be reviewed or the group guard applies, and
    returns why the run is held; None when it may go on. `why_first`: a reason already
    known (max_changes), which holds the run whatever the plan says. A plan file is written
    only for a run that is held: the guard alone first counts without writing."""
    must_review = why_first is not None or job.safety.require_approval
    if not must_review and not (guard and guard_active(job)):
        return None
    path = plan_path(results)
    saved = await plan_job(job, environ=environ, out=path if must_review else None)
    reasons = [why_first] if why_first else []
    if guard and guard_active(job) and saved.over_limit:
        reasons.append(over_limit_text(saved.over_limit, job))
    if job.safety.require_approval:
        reasons.append("the job requires approval ([safety] require_approval)")
    if not reasons:
        return None
    if saved.path is None:
        await plan_job(job, environ=environ, out=path)
    return Held("; ".join(reasons), path)


def over_limit_text(groups: list[GroupOverLimit], job: Job) -> str:
    return refusal_text(groups, max_share=job.safety.max_group_removal)
