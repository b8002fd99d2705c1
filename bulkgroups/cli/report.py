"""`bulkgroups report` and `bulkgroups undo`: parse, call, print, exit. The figures come from
`report`, the page from `report_html`, the reversing rows from `undo`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson
from rich.table import Table
from rich.text import Text

from bulkgroups.cli.console import err, out
from bulkgroups.results.file import ResultsFileError, max_row_of, meta_path, read_meta
from bulkgroups.results.html import render_html
from bulkgroups.results.report import STATUSES, Report, failed_rows, scan_results
from bulkgroups.results.undo import (
    OutputExists,
    Trust,
    UndoSummary,
    trust_of,
    write_rows,
    write_undo,
)
from bulkgroups.rows.readers import detect_format

EXIT_USAGE = 2  # as in runner: usage error, nothing done

RESULTS = click.Path(dir_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, writable=False, path_type=Path)


def _fail(message: str) -> NoReturn:
    err.print(f"bulkgroups: {message}", markup=False)
    sys.exit(EXIT_USAGE)


def _warn(message: str) -> None:
    err.print(f"bulkgroups: warning: {message}", markup=False)


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
    """Write a whole file under a temporary name and move it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# -- report ---------------------------------------------------------------------------------


@click.command("report")
@click.argument("results", type=RESULTS, metavar="RESULTS.jsonl")
@click.option("--json", "as_json", is_flag=True,
              help="Print the figures as one JSON object (counts, by_op, rows_per_s, "
              "latency_ms, retries, errors) instead of tables.")
@click.option("--failed-csv", type=FILE, metavar="FILE",
              help="Also write the rows whose last outcome is failed to FILE, a CSV input "
              "(op,group,member,to_group) to run with the same job's target. Replaces FILE.")
@click.option("--html", "html_file", type=FILE, metavar="FILE",
              help="Also write the figures and a chart of progress over time to FILE, one "
              "self-contained HTML page (no scripts, no external files). Replaces FILE.")
def report_command(results: Path, as_json: bool, failed_csv: Path | None,
                   html_file: Path | None) -> None:
    """Count the rows of RESULTS.jsonl by status and op (each row by its last line), group the
    errors by message, and give rows a second, latency percentiles and retries.

    Exits 0, or 2 when the results file cannot be read.
    """
    meta = _meta(results)
    try:
        scan = scan_results(results, meta)
    except ResultsFileError as exc:  # missing, unreadable, empty or not a results file
        _fail(str(exc))
    report = scan.report()
    # With --json, stdout holds the JSON alone; notes go to stderr.
    note = err if as_json else out
    if failed_csv is not None:
        try:
            n = write_rows(failed_csv, failed_rows(results, scan), fmt="csv", force=True)
        except OSError as exc:
            _fail(f"{failed_csv}: cannot write: {_why(exc)}")
        note.print(f"wrote {n:,} failed rows to {failed_csv}", markup=False)
    if html_file is not None:
        page = render_html(report, source=str(results),
                           generated_at=datetime.now().astimezone().isoformat(timespec="seconds"))
        try:
            _replace_text(html_file, page)
        except OSError as exc:
            _fail(f"{html_file}: cannot write: {_why(exc)}")
        note.print(f"wrote the HTML report to {html_file}", markup=False)
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode()
                         + "\n")
    else:
        _print_report(report, results)
    if report.unreadable:
        _warn(f"{results}: skipped {report.unreadable:,} unreadable lines (torn by a crash?)")


def _print_report(report: Report, results: Path) -> None:
    table = Table(title=f"{results}: rows by status", header_style="bold")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for status in STATUSES:
        table.add_row(status, f"{report.counts[status]:,}")
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
