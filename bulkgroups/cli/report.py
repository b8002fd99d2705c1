"""`bulkgroups report` and `bulkgroups undo`: parse, call, print, exit. The figures come from
`report`, the page from `report_html`, the reversing rows from `undo`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson
from rich.table import Table
from rich.text import Text

from bulkgroups.cli.console import err, out, plural
from bulkgroups.cli.errors import fail as _fail
from bulkgroups.cli.errors import warn as _warn
from bulkgroups.results.file import (
    OWNER_ONLY,
    ResultsFileError,
    companions,
    max_row_of,
    meta_path,
    read_meta,
)
from bulkgroups.results.html import render_html
from bulkgroups.results.report import STATUSES, Report, ResultsScan, failed_rows, scan_results
from bulkgroups.results.undo import (
    OutputExists,
    Trust,
    UndoSummary,
    held_back_warning,
    trust_of,
    write_rows,
    write_undo,
)
from bulkgroups.results.verdict import RunInfo, Verdict, not_reached, runs, verdict
from bulkgroups.rows.readers import detect_format

RESULTS = click.Path(dir_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, writable=False, path_type=Path)


def _meta(results: Path) -> dict[str, Any] | None:
    """The run metadata, or None (with a warning when it is there but unreadable): report
    and undo both work without it, only less exactly."""
    try:
        return read_meta(results)
    except ResultsFileError as exc:
        _warn(f"{exc}; going on without it")
        return None


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _replace_text(path: Path, text: str) -> None:
    """Write a whole file under a temporary name and move it into place. Mode 600, like the
    results it is made from: a report names people and groups."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_ONLY)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, OWNER_ONLY)  # an existing tmp keeps its mode through O_TRUNC
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# -- report ---------------------------------------------------------------------------------


@click.command("report")
@click.argument("results", type=RESULTS, metavar="RESULTS.jsonl...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print the figures as one JSON object (counts, by_op, rows_per_s, "
              "latency_ms, retries, errors, runs, not_reached, verdict) instead of tables; "
              "with several files, a JSON list of them, each with its \"results\" path.")
@click.option("--failed-csv", type=FILE, metavar="FILE",
              help="Also write the rows whose last outcome is failed to FILE, a CSV input "
              "(op,group,member,to_group) to run with the same job's target. Replaces FILE. "
              "One results file only.")
@click.option("--html", "html_file", type=FILE, metavar="FILE",
              help="Also write a page a person can read: the verdict and the command to run, "
              "the runs, counts, groups, failed rows and a chart of progress over time, one "
              "self-contained HTML file (no scripts, mode 600). Replaces FILE. One results "
              "file only.")
def report_command(results: tuple[Path, ...], as_json: bool, failed_csv: Path | None,
                   html_file: Path | None) -> None:
    """Count the rows of each RESULTS.jsonl by status and op (each row by its last line),
    say how each run ended and how many input rows no run reached, group the errors by
    message, and give rows a second, latency percentiles and retries. Several files (a
    shell glob such as results/demo-*.jsonl) are reported one after the other.

    Exits 0, or 2 when a file cannot be read or is not a results file.
    """
    # A glob such as results/demo-*.jsonl also names the files kept beside each results file
    # (a selecting job's rows, a plan held for review): they are not reported on their own.
    beside = {c.resolve() for r in results for c in companions(r)}
    results = tuple(r for r in results if r.resolve() not in beside)
    if len(results) > 1 and (failed_csv is not None or html_file is not None):
        _fail("--failed-csv and --html take one results file; name one, not "
              f"{len(results)}")
    reports = []
    for i, path in enumerate(results):
        if i and not as_json:
            out.print()
        reports.append(_one(path, as_json=as_json, failed_csv=failed_csv, html_file=html_file))
    if as_json:
        body: Any = (reports[0] if len(reports) == 1
                     else [{"results": str(p), **r} for p, r in zip(results, reports,
                                                                     strict=True)])
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")


def _one(results: Path, *, as_json: bool, failed_csv: Path | None,
         html_file: Path | None) -> dict[str, Any]:
    meta = _meta(results)
    try:
        scan = scan_results(results, meta)
    except ResultsFileError as exc:  # missing, unreadable, empty or not a results file
        _fail(str(exc))
    report = scan.report()
    _check_is_results(results, report, meta)
    history = runs(meta)
    job = meta.get("job") if meta and isinstance(meta.get("job"), str) else None
    judged = verdict(report, history, results=str(results), job=job)
    missing = not_reached(report, history)
    # With --json, stdout holds the JSON alone; notes go to stderr.
    note = err if as_json else out
    if failed_csv is not None:
        try:
            n, held = write_rows(failed_csv, failed_rows(results, scan), fmt="csv", force=True)
        except OSError as exc:
            _fail(f"{failed_csv}: cannot write: {_why(exc)}")
        note.print(f"wrote {plural(n, 'failed row')} to {failed_csv}", markup=False)
        if held:
            _warn(held_back_warning(held, failed_csv))
    if html_file is not None:
        _write_html(html_file, results, report, scan, meta)
        note.print(f"wrote the HTML report to {html_file}", markup=False)
    if not as_json:
        _print_report(report, results, missing=missing)
        _print_runs(history, judged)
    if report.unreadable:
        _warn(f"{results}: skipped {report.unreadable:,} unreadable lines (torn by a crash?)")
    figures = report.to_json()
    figures.update(
        not_reached=missing,
        runs=[{"command": r.command, "started_at": r.started_at, "ended_at": r.ended_at,
               "exit": r.exit, "stopped": r.stopped, "finished": r.finished,
               "not_reached": r.not_reached} for r in history],
        verdict={"level": judged.level, "headline": judged.headline, "todo": judged.todo,
                 "command": judged.command},
    )
    return figures


def _check_is_results(results: Path, report: Report, meta: Mapping[str, Any] | None) -> None:
    """A CSV, a job file or an empty file is not a results file: exit 2, not a table of
    zeros. An empty file with its metadata is one (a run that finished no row)."""
    if report.lines:
        return
    if report.unreadable:
        _fail(f"{results}: not a results file: none of its {report.unreadable:,} lines is a "
              "results line (a JSON object with row and status)")
    if meta is None:
        _fail(f"{results}: not a results file: it holds no results lines and has no "
              f"{meta_path(results).name} beside it")


def _write_html(html_file: Path, results: Path, report: Report, scan: ResultsScan,
                meta: Mapping[str, Any] | None) -> None:
    try:
        page = render_html(report, source=str(results), meta=meta, results=results,
                           generated_at=datetime.now().astimezone().isoformat(
                               timespec="seconds"))
        _replace_text(html_file, page)
    except OSError as exc:
        _fail(f"{html_file}: cannot write: {_why(exc)}")


def _clock(iso: str | None) -> str:
    """A run's time as the metadata has it (UTC), to the second."""
    if not iso:
        return "–"
    return iso.replace("T", " ").split(".")[0].removesuffix("Z")


def _print_runs(history: list[RunInfo], judged: Verdict) -> None:
    if history:
        table = Table(title="runs", header_style="bold")
        for name in ("#", "command", "started (UTC)", "ended", "rows", "not reached", "exit",
                     "how it ended"):
            table.add_column(name, overflow="fold")
        for i, r in enumerate(history, 1):
            table.add_row(str(i), r.command, _clock(r.started_at), _clock(r.ended_at),
                          "–" if r.finished is None else f"{r.finished:,}",
                          "–" if r.not_reached is None else f"{r.not_reached:,}",
                          "–" if r.exit is None else str(r.exit), Text(r.how))
        out.print(table)
    out.print(Text(f"verdict: {judged.headline} {judged.todo}"))
    if judged.command:
        out.print(Text(f"next: {judged.command}"))


def _print_report(report: Report, results: Path, *, missing: int | None) -> None:
    table = Table(title=f"{results}: rows by status", header_style="bold")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for status in STATUSES:
        table.add_row(status, f"{report.counts[status]:,}")
    if missing:
        # A stopped run: what the file holds is not the whole input.
        table.add_row("finished", f"{report.rows:,}", style="bold")
        table.add_row("not reached", f"{missing:,}", style="bold")
        table.add_row("input rows", f"{report.rows + missing:,}")
    else:
        table.add_row("total", f"{report.rows:,}", style="bold")
    out.print(table)
    if report.by_op:
        ops = Table(title="by op", header_style="bold")
        ops.add_column("op")
        for status in STATUSES:
            ops.add_column(status, justify="right")
        for op, per in report.by_op.items():
            ops.add_row(Text(op), *(f"{per[s]:,}" for s in STATUSES))
        out.print(ops)
    if report.rows_per_s is not None and report.run_seconds is not None:
        over = "run time" if report.rate_from == "runs" else "first to last finish"
        out.print(f"{report.rows_per_s:,.1f} rows/s over {report.run_seconds:,.1f} s of {over}")
    lat = report.latency_ms
    if lat.p50 is not None:
        out.print(f"latency p50 {lat.p50:,.0f} ms, p95 {lat.p95 or 0:,.0f} ms, "
                  f"max {lat.max or 0:,.0f} ms over {report.requests:,} rows that sent requests")
        srv, wait = report.server_ms, report.waiting_ms
        if srv.p50 is not None and wait.p50 is not None:
            # A fast server behind a rate limit is not a slow server: say which part is which.
            out.print(f"  of which the server's answer p50 {srv.p50:,.0f} ms, p95 "
                      f"{srv.p95 or 0:,.0f} ms; waiting for a turn (pacer, batch) p50 "
                      f"{wait.p50:,.0f} ms, p95 {wait.p95 or 0:,.0f} ms")
    else:
        out.print("no requests were sent")
    out.print(f"retries {report.retries:,}")
    if report.errors:
        errors = Table(title="errors", header_style="bold")
        errors.add_column("message", overflow="fold")
        errors.add_column("rows", justify="right")
        errors.add_column("example rows", overflow="fold")
        for e in report.errors:
            more = " …" if e.count > len(e.rows) else ""
            # A message can hold text from the input: a cell, never markup.
            errors.add_row(Text(e.message), f"{e.count:,}", ", ".join(map(str, e.rows)) + more)
        out.print(errors)


# -- undo -----------------------------------------------------------------------------------


@click.command("undo")
@click.argument("results", type=RESULTS, metavar="RESULTS.jsonl")
@click.option("-o", "--output", required=True, type=FILE, metavar="FILE",
              help="Input file to write: CSV or JSONL by its extension (.csv, .jsonl, "
              ".ndjson). Run it with a job for the same target.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists (refused otherwise).")
def undo_command(results: Path, output: Path, force: bool) -> None:
    """Write the input that reverses every change RESULTS.jsonl records as made, latest first:
    an ok remove becomes an add, an ok add a remove, an ok move a move back, and a move_all
    one move back per member it moved (an add for each member that only left).

    Rows that ended noop, failed, invalid or pending are not reversed, except a move_all
    that moved some members before it failed: its line lists them, and they go back.

    When the run left snapshots of its groups (RESULTS.snapshot.jsonl.gz, written by every
    run with precheck), the rows put each member the run changed back to its state before
    the run and nothing else, and a change the API cannot reverse (DocSpace will not add a
    guest or a terminated account back) is listed instead of written. Plan the file, then
    apply it: a member someone else changed since is then left alone.
    Exits 0, or 2 when the results cannot be read or FILE exists (without --force).
    """
    fmt = detect_format(output)
    if fmt is None:
        _fail(f"{output}: cannot tell the format: name it .csv or .jsonl")
    taken = {results.resolve(), meta_path(results).resolve()}
    if output.resolve() in taken:
        _fail(f"{output}: that is the results file or its metadata; write elsewhere")
    meta = _meta(results)
    try:
        target = meta.get("target") if meta else None
        kind = target.get("kind") if isinstance(target, dict) else None
        summary = write_undo(results, output, fmt=fmt, force=force, max_row=max_row_of(meta),
                             require_lines=meta is None,
                             kind=kind if isinstance(kind, str) else None)
    except ResultsFileError as exc:
        _fail(str(exc))
    except OutputExists:
        _fail(f"{output} exists: pass --force to replace it")
    except OSError as exc:
        where = exc.filename or results
        _fail(f"{where}: {_why(exc)}")
    _undo_warnings(summary, meta, results, output)
    if summary.held_back:
        _warn(held_back_warning(summary.held_back, output))
    out.print(_undo_line(summary, meta, results, output), markup=False)


def _undo_warnings(summary: UndoSummary, meta: Mapping[str, Any] | None, results: Path,
                   output: Path) -> None:
    for u in summary.not_restorable[:_LISTED]:
        _warn(f"cannot put back {u.member} in {u.group}: {u.why}")
    if len(summary.not_restorable) > _LISTED:
        _warn(f"... and {len(summary.not_restorable) - _LISTED:,} more that cannot be put back")
    if summary.from_snapshot:
        return _undo_other_warnings(summary, results)
    trust = trust_of(meta)
    removes = summary.undone.get("remove", 0)
    others = summary.undone.get("add", 0) + summary.undone.get("move", 0)
    if trust is not Trust.EXACT and removes + others:
        if trust is Trust.NO_PRECHECK:
            why = "this DocSpace run had precheck = false"
        else:
            why = (f"{meta_path(results)} is missing or does not say whether the run read the "
                   "groups first (precheck); if it was a DocSpace run without precheck")
        _warn(
            f"{why}, so removals of non-members were recorded as ok: {removes:,} remove rows "
            f"are written as adds and would add those people back even if they never were "
            f"members"
            + (f"; likewise {others:,} add/move rows may remove people who were members "
               "before" if others else "")
            + f". Check {output} before running it."
        )
    _undo_other_warnings(summary, results)


# Rows listed one by one as not restorable; the rest are counted.
_LISTED = 100


def _undo_other_warnings(summary: UndoSummary, results: Path) -> None:
    if summary.cannot:
        _warn(f"{summary.cannot:,} results lines record a change without saying which members "
              "it moved (move_all lines of an older version): not undone")
    if summary.unreadable:
        _warn(f"{results}: skipped {summary.unreadable:,} unreadable lines (torn by a crash?)")


def _undo_line(summary: UndoSummary, meta: Mapping[str, Any] | None, results: Path,
               output: Path) -> str:
    if not summary.total:
        return f"nothing to undo in {results}: wrote {output} with no rows"
    by_op = ", ".join(f"{op} {n:,}" for op, n in sorted(summary.written.items()))
    job = meta.get("job") if meta else None
    target = f"the same target as {job}" if isinstance(job, str) else "the same target"
    return (
        f"wrote {summary.total:,} rows to {output} ({by_op}), undoing "
        f"{sum(summary.undone.values()):,} changes recorded in {results}; next: point "
        f"[input] path of a job for {target} at {output}, check it with `bulkgroups validate "
        "JOB.toml`, then `bulkgroups run JOB.toml`"
    )
