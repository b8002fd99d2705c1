"""What `apply` checks: before it sends anything, that the plan is about this job, input and
target; at send time, that each row's planned precondition still holds.

The send-time check is made where the adapter decides the row (after its fresh read of the
group), so that it costs no extra request: a planned change travels as a `CheckedRow`
carrying its precondition, and `stale_reason` compares that with what the adapter now reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkgroups.model import Row
from bulkgroups.planning.planfile import PlanHeader
from bulkgroups.targets.decision import Decision, Fact, Kind


@dataclass(frozen=True, slots=True)
class CheckedRow(Row):
    """A row of a saved plan: sent only while `pre` (as planned) still holds."""

    pre: tuple[Fact, ...] = ()
    # A resumed apply: its own earlier attempt may have made the change before the crash
    # took its answer, so a row whose goal already holds is `noop`, not `stale`.
    resumed: bool = False


def stale_reason(row: Row, now: Decision) -> str | None:
    """Why a planned change no longer stands, given the adapter's decision from a fresh
    read; None when it does (or `row` is no plan's row). A fact the fresh read cannot tell
    (a hidden member, a SID the list did not carry) is left to the send, as a run would."""
    if not isinstance(row, CheckedRow) or (row.resumed and now.kind is Kind.ALREADY):
        return None
    current = {(f.group, f.member): f.present for f in now.precondition}
    for fact in row.pre:
        present = current.get((fact.group, fact.member))
        if present is None or present is fact.present:
            continue
        return _changed(fact)
    if now.kind is not Kind.CHANGE:
        return f"no longer a change: {now.reason or now.kind.value}"
    return None


def _changed(fact: Fact) -> str:
    if not fact.member:
        return (f"group {fact.group} is empty now" if fact.present
                else f"group {fact.group} has members now")
    if fact.present:
        return f"member already left group {fact.group} after the plan"
    return f"member joined group {fact.group} after the plan"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def membership_digest(keys: Iterable[str]) -> str:
    """One digest of a group's listed members, however the API ordered them; `keys` are
    identity keys (two spellings of one member give one key)."""
    h = hashlib.sha256()
    for k in sorted(set(keys)):
        h.update(k.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()[:32]


def differences(header: PlanHeader, *, job_sha256: str, target: dict[str, str],
                input_path: Path, input_fingerprint: dict[str, Any]) -> list[str]:
    """What no longer matches between a plan and the job it was made for; [] when it all
    does. Each entry reads as a sentence."""
    out = []
    if header.job_sha256 != job_sha256:
        out.append(f"the job file {header.job} changed since the plan was made")
    if header.target != target:
        out.append(f"the job now targets {target.get('kind')} at {target.get('base_url')}, "
                   f"the plan was made for {header.target.get('kind')} at "
                   f"{header.target.get('base_url')}")
    if Path(header.input) != input_path:
        out.append(f"the job now reads {input_path}, the plan was made from {header.input}")
    elif header.input_fingerprint != input_fingerprint:
        out.append(f"the input {input_path} changed since the plan was made")
    return out
