"""What a person sees: a live progress line on a terminal, and the summary at the end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bulkgroups.model import Status, TargetKind
from bulkgroups.results.stats import Tally
from bulkgroups.rows.survey import Survey

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def is_tty() -> bool:
    return sys.stderr.isatty()


class LiveProgress:
    """Rows done of total, by status, rate and ETA; redrawn at most a few times a second."""

    def __init__(self, *, total: int | None, enabled: bool) -> None:
        self._enabled = enabled and is_tty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total = total
        self._skipped = 0
        self._started = time.monotonic()

    def __enter__(self) -> LiveProgress:
        if self._enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[statuses]}"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=err,
                refresh_per_second=4,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "rows", total=self._total, statuses="", rate=""
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def skip(self, rows: int) -> None:
        """Rows a resume does not run again count as done from the start."""
        self._skipped = rows

    def update(self, tally: Tally) -> None:
        if self._progress is None or self._task is None:
            return
        done = tally.finished
        elapsed = max(time.monotonic() - self._started, 1e-6)
        statuses = " ".join(f"{s.value} {n}" for s, n in sorted(tally.by_status.items()) if n)
        self._progress.update(
            self._task,
            completed=done + self._skipped,
            statuses=statuses,
            rate=f"{done / elapsed:,.0f} rows/s",
        )


def print_summary(
    tally: Tally,
    *,
    elapsed_s: float,
    results: Path,
    stopped: str | None,
    resume_hint: str | None,
    already: int = 0,
    not_reached: int | None = None,
) -> None:
    table = Table(title="bulkgroups: summary", show_header=True, header_style="bold")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for status in Status:
        table.add_row(status.value, f"{tally.by_status.get(status, 0):,}")
    if not_reached is None:
        table.add_row("total", f"{tally.finished:,}", style="bold")
    else:
        # A run that stopped early: what it finished is not the input (ops, issue 15).
        table.add_row("finished", f"{tally.finished:,}", style="bold")
        table.add_row("not reached", f"{not_reached:,}", style="bold")
        table.add_row("input rows", f"{tally.finished + not_reached + already:,}")
    out.print(table)
    rate = tally.finished / elapsed_s if elapsed_s > 0 else 0.0
    p50, p95 = tally.latency.percentile(50), tally.latency.percentile(95)
    latency = (
        f"latency p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        if p50 is not None and p95 is not None
        else "no requests"
    )
    out.print(f"{rate:,.1f} rows/s over {elapsed_s:.1f} s; {latency}; retries {tally.retries:,}")
    if already:
        out.print(f"{already:,} rows were already finished before this run and were skipped")
    out.print(f"results: {results}", markup=False)
    if stopped:
        err.print(f"bulkgroups: stopped: {stopped}", markup=False)
    if resume_hint:
        out.print(f"to finish the remaining rows: {resume_hint}", markup=False)


def print_survey(
    s: Survey, *, kind: TargetKind, source: Path, dry_run: bool, batch_size: int = 1
) -> None:
    out.print(f"input: {source}", markup=False)
    out.print(f"rows: {s.rows:,} ({s.valid:,} valid, {s.invalid:,} invalid)")
    for op, n in sorted(s.by_op.items()):
        out.print(f"  {op}: {n:,}", markup=False)
    if dry_run:
        out.print(f"groups touched: {len(s.by_group):,}")
        for group, n in s.by_group.most_common(10):
            out.print(f"  {group}: {n:,} rows", markup=False)
        changes = s.member_changes()
        if kind is TargetKind.DOCSPACE and batch_size > 1:
            out.print(
                f"would send at least {changes:,} member changes to {kind.value}, in list "
                f"requests of up to {batch_size} members (dry run: nothing sent)"
            )
        else:
            out.print(
                f"would send at least {changes:,} change requests to {kind.value} "
                "(dry run: nothing sent)"
            )
    if s.listed_invalid:
        out.print("invalid rows:")
        for bad in s.listed_invalid:
            out.print(f"  line {bad.line} (row {bad.row}): {bad.reason}", markup=False)
        if s.invalid > len(s.listed_invalid):
            out.print(f"  ... and {s.invalid - len(s.listed_invalid):,} more")
