"""`bulkgroups export`: parse the options into a Selection, export, print the counts. Also the
preview that `validate` and `run --dry-run` show for a job with `[input] select`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from bulkgroups.cli.errors import fail
from bulkgroups.exits import (
    EXIT_OK,
    EXIT_ROWS,
    Interrupted,
    unless_signalled,
)
from bulkgroups.export.directory import ReadFailed
from bulkgroups.export.select import MemberKind, Selection, parse_where, selection_problem
from bulkgroups.export.write import ExportSummary, export, read_exclude, to_temp
from bulkgroups.job import Job, load_job
from bulkgroups.model import Op
from bulkgroups.results.undo import OutputExists
from bulkgroups.rows.readers import detect_format, read_rows
from bulkgroups.rows.survey import Survey, survey

_OPTION_OF = {"groups": "--group", "member_kind": "--member-kind", "where": "--where",
              "indirect": "--indirect", "op": "--op", "to_group": "--to-group"}


def _selection(job: Job, groups: tuple[str, ...], kinds: tuple[str, ...],
               wheres: tuple[str, ...], indirect: bool, op: str | None,
               to_group: str | None) -> Selection:
    given = groups or kinds or wheres or indirect or op or to_group
    if not given and job.input.select is not None:
        return job.input.select  # the job's own selection
    try:
        where = tuple(parse_where(w) for w in wheres)
    except ValueError as exc:
        fail(f"--where {exc}")
    sel = Selection(
        groups=tuple(g.strip() for g in groups),
        member_kind=frozenset(MemberKind(k) for k in kinds),
        where=where, indirect=indirect, op=Op(op or "remove"),
        to_group=to_group.strip() if to_group else None,
    )
    problem = selection_problem(job.target.kind, sel)
    if problem is not None:
        fail(f"{_OPTION_OF[problem[0]]}: {problem[1]}")
    return sel


def _print(summary: ExportSummary, *, kept: bool = True) -> None:
    for line in summary.lines(kept=kept):
        click.echo(line)


@click.command("export")
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path),
                metavar="JOB.toml")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Input file to write: CSV or JSONL by its extension "
              "(.csv, .jsonl, .ndjson); written whole or not at all, mode 600.")
@click.option("--group", "groups", multiple=True, metavar="ID",
              help="A group to read (repeatable). None: every group (DocSpace, page by page); "
              "Adaxes needs the groups named.")
@click.option("--member-kind", "kinds", multiple=True,
              type=click.Choice([k.value for k in MemberKind]),
              help="DocSpace: take only these members (repeatable). Terminated accounts are "
              "found through the people search, as group reads hide them. Default: all "
              "for remove, user for move and add.")
@click.option("--where", "wheres", multiple=True, metavar="PROPERTY=VALUE",
              help="Adaxes: take members with this property value (repeatable; the same "
              "property twice: either value). Properties come as arrays: any value matches. "
              "PROPERTY&=N tests bits, e.g. userAccountControl&=2 (disabled); "
              "accountDisabled=true where the server lists that property.")
@click.option("--indirect", is_flag=True,
              help="Adaxes, with --op add: include members of nested groups. A removal "
              "applies to direct members only, so remove and move refuse it.")
@click.option("--op", type=click.Choice([o.value for o in (Op.REMOVE, Op.MOVE, Op.ADD)]),
              help="The rows: remove (default: the member leaves the group), move (joins "
              "--to-group, then leaves), add (joins --to-group).")
@click.option("--to-group", metavar="ID", help="The group members join, for move and add.")
@click.option("--exclude", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="FILE", help="Ids never exported, one a line (# comments).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists (refused otherwise).")
def export_command(job_file: Path, output: Path, groups: tuple[str, ...],
                   kinds: tuple[str, ...], wheres: tuple[str, ...], indirect: bool,
                   op: str | None, to_group: str | None, exclude: Path | None,
                   force: bool) -> None:
    """Write an input file from the live directory: one row per member of the groups that
    matches the filters, for the job's target. Sends only GETs, paced like a run. With no
    filter option, a job with `[input] select` exports its own selection.

    [safety] protected ids and --exclude ids are never written. Prints the counts per group.
    Exits 0; 1 when a group could not be read (nothing is written for it; the others are);
    2 on a usage or job-file error; 3 when the credentials are refused.
    """
    job = load_job(job_file)
    fmt = detect_format(output)
    if fmt is None:
        fail(f"{output}: cannot tell the format: name it .csv or .jsonl")
    if not force and output.exists():
        fail(f"{output} exists: pass --force to replace it")
    sel = _selection(job, groups, kinds, wheres, indirect, op, to_group)
    try:
        excluded = read_exclude(exclude, job.target.kind) if exclude else frozenset()
    except (OSError, ValueError) as exc:
        fail(f"--exclude {exc}")
    try:
        summary = asyncio.run(unless_signalled(export(
            job, sel, output, fmt=fmt, exclude=excluded, environ=os.environ, force=force)))
    except Interrupted as exc:
        fail(f"interrupted: {output} was not written", exc.code)
    except OutputExists:
        fail(f"{output} exists: pass --force to replace it")
    except ReadFailed as exc:  # an InputError (2) that says a read failed
        fail(f"{exc}; nothing written", EXIT_ROWS)
    _print(summary)
    for g in summary.unreadable:
        click.echo(f"bulkgroups: {g.group}: could not be read ({g.error}); nothing written "
                   "for it", err=True)
    sys.exit(EXIT_ROWS if summary.unreadable else EXIT_OK)


async def _preview(job: Job) -> tuple[ExportSummary, Survey]:
    async with to_temp(job, environ=os.environ) as (exported, summary):
        found = survey(read_rows(exported.input.path, fmt="jsonl", kind=job.target.kind))
        return summary, found


def survey_selection(job: Job, *, dry_run: bool) -> NoReturn:
    """`validate` / `run --dry-run` of a job with `[input] select`: what the selection finds
    now (read live, GETs only, not kept), then the usual survey of those rows."""
    from bulkgroups.cli import console

    try:
        summary, found = asyncio.run(unless_signalled(_preview(job)))
    except Interrupted as exc:
        fail("interrupted while reading the selection: nothing was sent", exc.code)
    except ReadFailed as exc:  # an InputError (2) that says a read failed
        fail(str(exc), EXIT_ROWS)
    _print(summary, kept=False)
    assert job.input.select is not None
    console.print_survey(found, kind=job.target.kind,
                         source=Path(f"select ({job.input.select.describe()})"),
                         dry_run=dry_run, batch_size=job.limits.batch_size)
    sys.exit(EXIT_ROWS if summary.unreadable or found.invalid else EXIT_OK)
