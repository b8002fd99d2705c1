"""What a results file says at a glance: how each run ended (from RESULTS.meta.json), how many
input rows no run reached, and the verdict: what happened, what needs doing, the command.

Pure: reads nothing; `report` and the HTML page both call it with the figures and the
metadata they already have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bulkgroups.results.report import Report

_EXIT_WORDS: Final = {
    0: "done",
    1: "done, some rows failed or invalid",
    2: "job or usage error",
    3: "refused or aborted",
    130: "interrupted (SIGINT)",
    143: "terminated (SIGTERM)",
}


def exit_words(code: int | None) -> str:
    if code is None:
        return "no end recorded (killed, or still running)"
    return _EXIT_WORDS.get(code, f"exit {code}")


@dataclass(frozen=True, slots=True)
class RunInfo:
    command: str
    started_at: str | None
    ended_at: str | None
    exit: int | None
    stopped: str | None
    detail: str | None
    finished: int | None  # rows this run finished
    not_reached: int | None
    already: int | None

    @property
    def input_rows(self) -> int | None:
        if self.finished is None or self.not_reached is None:
            return None
        return (self.already or 0) + self.finished + self.not_reached

    @property
    def how(self) -> str:
        """How the run ended, in words."""
        if not self.stopped:
            return exit_words(self.exit)
        words = self.stopped
        if self.exit == 3:
            words = f"refused or aborted: {words}"
        return words + (f" ({self.detail})" if self.detail else "")


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def runs(meta: Mapping[str, Any] | None) -> list[RunInfo]:
    """The runs the metadata records, in the order they ran."""
    found: list[RunInfo] = []
    raw = (meta or {}).get("runs")
    if not isinstance(raw, list):
        return found
    for run in raw:
        if not isinstance(run, dict):
            continue
        counts = run.get("counts")
        finished = (sum(v for v in counts.values() if isinstance(v, int))
                    if isinstance(counts, dict) else None)
        found.append(RunInfo(
            command=_str(run.get("command")) or "run",
            started_at=_str(run.get("started_at")),
            ended_at=_str(run.get("ended_at")),
            exit=_int(run.get("exit")),
            stopped=_str(run.get("stopped")),
            detail=_str(run.get("stop_detail")),
            finished=finished,
            not_reached=_int(run.get("not_reached")),
            already=_int(run.get("already")),
        ))
    return found


def not_reached(report: Report, history: list[RunInfo]) -> int | None:
    """Input rows without any outcome line in the file, from the last run that knew the
    input's size; None when no run recorded it (an older version's metadata)."""
    for run in reversed(history):
        total = run.input_rows
        if total is not None:
            return max(0, total - report.rows)
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    level: str  # "ok" | "warn" | "bad"
    headline: str  # what happened
    todo: str  # what needs doing
    command: str | None  # the command that does it


def verdict(report: Report, history: list[RunInfo], *, results: str,
            job: str | None) -> Verdict:
    c = report.counts
    failed, invalid, pending = c.get("failed", 0), c.get("invalid", 0), c.get("pending", 0)
    missing = not_reached(report, history) or 0
    last = history[-1] if history else None
    changed = c.get("ok", 0)
    if last is not None and last.exit is None and last.ended_at is None:
        return Verdict("bad", f"The last {last.command} has no recorded end: it was killed "
                       "(or is still running).",
                       "If no run holds the lock, finish the rows it did not get to.",
                       f"bulkgroups resume {results}")
    if last is not None and last.exit not in (None, 0, 1):
        head = f"The last {last.command} stopped early: {last.how}."
        if missing:
            was = "was" if missing == 1 else "were"
            head += f" {_rows(missing)} of the input {was} not reached."
        todo = {
            3: "Fix the cause above (credentials, a safety rail, the lock), then finish the "
               "rest: rows already done are not sent again.",
            2: "Fix the job file or its environment, then finish the rest.",
        }.get(last.exit or 0, "Finish the rest: rows already done are not sent again.")
        return Verdict("bad", head, todo, f"bulkgroups resume {results}")
    if missing or failed:
        parts = []
        if failed:
            parts.append(f"{_rows(failed)} failed")
        if missing:
            parts.append(f"{_rows(missing)} {'was' if missing == 1 else 'were'} not reached")
        which = ("failed and unreached" if failed and missing
                 else "failed" if failed else "unreached")
        return Verdict("bad", " and ".join(parts) + f"; {changed:,} changes were made.",
                       f"Send the {which} rows again once the cause is fixed (see the "
                       "errors); rows already done are not sent again.",
                       f"bulkgroups resume {results}")
    if invalid:
        check = f"bulkgroups validate {job}" if job else None
        is_are = "is" if invalid == 1 else "are"
        return Verdict("warn", f"Every valid row is done ({changed:,} changes), but "
                       f"{_rows(invalid)} of the input {is_are} invalid and not sent.",
                       "Fix those rows in the input (line numbers and reasons below) and "
                       "run them again.", check)
    if pending:
        return Verdict("warn", f"Done: {changed:,} changes made; {pending:,} wait for "
                       "approval in Adaxes.",
                       "Have the approver decide on them in Adaxes; nothing to re-run.", None)
    return Verdict("ok", f"Done: every row ended ok or noop ({changed:,} changes made).",
                   "Nothing to do.", None)
