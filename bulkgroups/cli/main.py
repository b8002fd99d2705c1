"""The command line: parse, validate, call one async function, map the result to an exit
status. Everything else lives in the modules it calls."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from bulkgroups import __version__
from bulkgroups.cli import console
from bulkgroups.cli.errors import exit_on_error, fail
from bulkgroups.display import shown
from bulkgroups.exits import EXIT_USAGE
from bulkgroups.job import Job, load_job, results_path, with_limits
from bulkgroups.results.file import read_meta
from bulkgroups.results.retention import latest_results
from bulkgroups.rows.source import rows_for
from bulkgroups.rows.survey import survey
from bulkgroups.runner import RunRequest, run_job

JOB = click.Path(exists=False, dir_okay=False, path_type=Path)


class _Commands(click.Group):
    """Every command runs inside the one error-to-exit handler (cli/errors.py)."""

    def invoke(self, ctx: click.Context) -> Any:
        with exit_on_error():
            return super().invoke(ctx)


def _load(job_file: Path, *, rate: float | None = None, concurrency: int | None = None) -> Job:
    return with_limits(load_job(job_file), rate=rate, concurrency=concurrency)


@click.group(cls=_Commands,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bulkgroups")
def cli() -> None:
    """Remove and move group members in bulk through the ONLYOFFICE DocSpace and Adaxes
    REST APIs, inside their rate limits, with one outcome per input row in a results file.

    Exit status: 0 every row ok, noop or pending; 1 some rows failed or were invalid;
    2 usage or job-file error (nothing sent); 3 run refused or aborted; 130/143 interrupted.
    """


def _limit_options(f: Callable[..., None]) -> Callable[..., None]:
    for option in reversed([
        click.option("--rate", type=click.FloatRange(min=0, min_open=True, max=10000),
                      help="Requests per second, overriding [limits] rate."),
        click.option("--concurrency", type=click.IntRange(1, 1000),
                      help="Requests in flight, overriding [limits] concurrency."),
        click.option("--max-changes", type=click.IntRange(min=0),
                     help="Allow up to N changing rows for this run, overriding [safety] "
                     "max_changes."),
        click.option("--yes", is_flag=True,
                     help="Allow this run past the max_changes cap (the cap is still printed)."),
        click.option("--quiet", "-q", is_flag=True,
                     help="No progress and no summary; only errors, on stderr."),
    ]):
        f = option(f)
    return f


def _execute(job: Job, request: RunRequest) -> NoReturn:
    view = console.ConsoleView(quiet=request.quiet)
    summary = asyncio.run(run_job(job, request, view=view))
    console.print_run(summary, quiet=request.quiet)
    sys.exit(summary.code)


@cli.command(short_help="Run the job: one outcome line per input row in the results.")
@click.argument("job_file", type=JOB, metavar="JOB.toml")
@click.option("--dry-run", is_flag=True,
              help="Read and validate every row, print what would be sent, send nothing.")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
              help="Results file to write, overriding [output] results.")
@click.option("--resume", is_flag=True,
              help="Finish the job's latest results file instead of starting a new one "
              "(same as `bulkgroups resume` on that file).")
@_limit_options
def run(job_file: Path, dry_run: bool, results: Path | None, resume: bool, rate: float | None,
        concurrency: int | None, max_changes: int | None, yes: bool, quiet: bool) -> None:
    """Run the job: every row of its input, one outcome line per row in the results file.

    Exits 0 when every row ended ok, noop or pending, 1 when some failed or were invalid,
    2 on a job-file error, 3 when refused or aborted (credentials, an untrusted TLS
    certificate, max_changes, failure ratio, another run holding the lock), 130/143 when
    interrupted (resume finishes the rest).
    """
    job = _load(job_file, rate=rate, concurrency=concurrency)
    if dry_run:
        _survey(job, dry_run=True)
    if resume and results is None:
        found = latest_results(job)
        if found is None:
            fail(f"{shown(job_file)}: no results file of this job to resume", EXIT_USAGE)
        results = found
    path = results_path(job, now=datetime.now().astimezone(), override=results)
    _execute(job, RunRequest(results=path, resume=resume, max_changes=max_changes, yes=yes,
                             quiet=quiet))


@cli.command(short_help="Finish a results file: re-run the rows with no final outcome.")
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path),
                metavar="RESULTS.jsonl")
@click.option("--force", is_flag=True,
              help="Resume although the input file changed since the run (only if its rows "
              "kept their order).")
@_limit_options
def resume(results: Path, force: bool, rate: float | None, concurrency: int | None,
           max_changes: int | None, yes: bool, quiet: bool) -> None:
    """Re-run only the rows of RESULTS.jsonl that have no final outcome (failed, or never
    reached), appending to it. The job and input are found through RESULTS.meta.json.
    """
    meta = read_meta(results)  # a broken one: ResultsFileError, exit 2 (exit_on_error)
    if meta is None or not isinstance(meta.get("job"), str):
        fail(f"{shown(results)}: no metadata beside it (expected {results.stem}.meta.json)",
             EXIT_USAGE)
    job = _load(Path(meta["job"]), rate=rate, concurrency=concurrency)
    plan = Path(meta["plan"]) if isinstance(meta.get("plan"), str) else None
    if plan is not None:  # an interrupted `apply`: its rows come from the plan, re-checked
        job = dataclasses.replace(job, limits=dataclasses.replace(job.limits, precheck=True))
    _execute(job, RunRequest(results=results, resume=True, force=force, plan=plan,
                             max_changes=max_changes, yes=yes, quiet=quiet))


@cli.command(short_help="Check the job file and every input row (sends nothing).")
@click.argument("job_file", type=JOB, metavar="JOB.toml")
def validate(job_file: Path) -> None:
    """Check the job file and every input row offline; list bad rows with their line numbers.
    A job with `[input] select` reads its groups first (GETs only) to find its rows.

    Exits 0 when every row is valid, 1 when some are not, 2 when the job file is wrong.
    """
    _survey(_load(job_file), dry_run=False)


def _survey(job: Job, *, dry_run: bool) -> NoReturn:
    if job.input.select is not None:  # the rows come from the directory (export)
        from bulkgroups.cli.export import survey_selection
        survey_selection(job, dry_run=dry_run)
    # The same rows as `run` takes (rows.source): protected rows invalid, copies skipped.
    found = survey(rows_for(job))
    console.print_survey(found, kind=job.target.kind, source=job.input.path, dry_run=dry_run,
                         batch_size=job.limits.batch_size)
    sys.exit(found.exit_code)


def _register() -> None:
    from bulkgroups.cli.export import export_command
    from bulkgroups.cli.plan import apply_command, plan_command
    from bulkgroups.cli.report import report_command, undo_command
    from bulkgroups.cli.schedule import schedule_command
    from bulkgroups.sandbox.cli import sandbox_command

    # One line each in `bulkgroups --help`: click would cut the first sentence short.
    short = {
        "plan": (plan_command, "Show what the job would change in the live groups (GET only)."),
        "apply": (apply_command, "Run exactly a saved plan's changes, re-checked at send time."),
        "export": (export_command, "Write an input file from the live directory's groups."),
        "report": (report_command, "Count a results file's rows by status; list the errors."),
        "undo": (undo_command, "Write the input that reverses the changes a results file made."),
        "schedule": (schedule_command,
                     "Print or install a nightly timer: systemd, cron or Kubernetes."),
        "sandbox": (sandbox_command, None),
    }
    for name, (command, help_line) in short.items():
        if help_line is not None:
            command.short_help = help_line
        cli.add_command(command, name=name)


_register()


def main() -> None:
    cli(prog_name="bulkgroups")
