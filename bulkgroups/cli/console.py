"""What a person sees: a live progress line on a terminal, and the summary at the end. The
runner and the other domain modules return what they found; this module prints it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
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

from bulkgroups.display import shown
from bulkgroups.model import Status, TargetKind
from bulkgroups.results.stats import Tally
from bulkgroups.rows.survey import Survey
from bulkgroups.runner import RunSummary

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def is_tty() -> bool:
    return sys.stderr.isatty()


def plural(n: int, one: str, many: str | None = None) -> str:
    """`n` and the noun it counts: "1 row", "2 rows", "1,000 rows"."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def warn(message: str) -> None:
    err.print(f"bulkgroups: warning: {message}", markup=False)


class ConsoleView:
    """The runner's RunView on this console: warnings on stderr, and a progress bar on a
    terminal unless quiet."""

    def __init__(self, *, quiet: bool) -> None:
        self._quiet = quiet

    @property
    def wants_total(self) -> bool:
        return not self._quiet and is_tty()

    def warn(self, message: str) -> None:
        warn(message)

    def say(self, message: str) -> None:
        if not self._quiet:
            out.print(message, markup=False)

    def progress(self, total: int | None) -> LiveProgress:
        return LiveProgress(total=total, enabled=not self._quiet)


class LiveProgress:
    """Rows done of total, by status, rate and ETA; redrawn at most a few times a second."""

    def __init__(self, *, total: int | None, enabled: bool) -> None:
        self._enabled = enabled and is_tty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total = total  # rows this run takes, from the row source (no header, no copies)
        self._started = time.monotonic()

    def __enter__(self) -> Callable[[Tally], None]:
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
        return self.update

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, tally: Tally) -> None:
        if self._progress is None or self._task is None:
            return
        done = tally.finished
        elapsed = max(time.monotonic() - self._started, 1e-6)
        statuses = " ".join(f"{s.value} {tally.by_status[s]}" for s in Status
                            if tally.by_status[s])
        self._progress.update(
            self._task,
            completed=done,
            statuses=statuses,
            rate=f"{done / elapsed:,.0f} rows/s",
        )


def print_run(summary: RunSummary, *, quiet: bool) -> None:
    """The end of a run: why it stopped (on stderr, even when quiet), then, unless quiet, the
    counts in `Status` order, speed, latency, the results file and how to finish it."""
    for note in summary.notes:
        err.print(f"bulkgroups: {note}", markup=False)
    if quiet:
        if summary.stopped:
            err.print(f"bulkgroups: stopped: {summary.stopped}", markup=False)
        return
    tally, elapsed_s = summary.tally, summary.elapsed_s
    not_reached, already = summary.not_reached, summary.already
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
    p50, p95 = tally.server.percentile(50), tally.server.percentile(95)
    w50, w95 = tally.waiting.percentile(50), tally.waiting.percentile(95)
    # A row's time split: the server's answer, and the wait before its request could go
    # (its batch's slot, the pacer): a fast server behind a rate limit is not a slow server.
    latency = (
        f"server p50 {p50:.0f} ms, p95 {p95:.0f} ms; "
        f"waiting p50 {w50 or 0:.0f} ms, p95 {w95 or 0:.0f} ms"
        if p50 is not None and p95 is not None
        else f"no row answered yet ({summary.requests_sent:,} requests sent)"
        if summary.requests_sent
        else "no requests"
    )
    out.print(f"{rate:,.1f} rows/s over {elapsed_s:.1f} s; {latency}; retries {tally.retries:,}")
    if summary.already:
        were = "was" if summary.already == 1 else "were"
        out.print(f"{plural(summary.already, 'row')} {were} already finished before this run "
                  f"and {were} skipped")
    out.print(f"results: {shown(summary.results)}", markup=False)
    if summary.stopped:
        err.print(f"bulkgroups: stopped: {summary.stopped}", markup=False)
    if summary.unfinished:
        out.print(f"to finish the remaining rows: bulkgroups resume {shown(summary.results)}",
                  markup=False)


def print_survey(
    s: Survey, *, kind: TargetKind, source: Path, dry_run: bool, batch_size: int = 1
) -> None:
    out.print(f"input: {shown(source)}", markup=False)
    dupes = f", {s.duplicates:,} duplicate" if s.duplicates else ""
    out.print(f"rows: {s.rows:,} ({s.valid:,} valid, {s.invalid:,} invalid{dupes})")
    for op, n in sorted(s.by_op.items()):
        out.print(f"  {op}: {n:,}", markup=False)
    if dry_run:
        out.print(f"groups touched: {len(s.by_group):,}")
        for group, n in s.by_group.most_common(10):
            out.print(f"  {group}: {plural(n, 'row')}", markup=False)
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
