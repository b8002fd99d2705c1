"""`bulkgroups plan` and `bulkgroups apply`: parse, call planning, print."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from datetime import datetime
from pathlib import Path

import click
import orjson

from bulkgroups.cli import console
from bulkgroups.cli.errors import fail
from bulkgroups.exits import unless_signalled
from bulkgroups.job import load_job, results_path
from bulkgroups.planning.forecast import render_text
from bulkgroups.planning.gate import guard_active, over_limit_text
from bulkgroups.planning.make import plan_job
from bulkgroups.planning.planfile import read_header
from bulkgroups.planning.show import render_saved
from bulkgroups.runner import EXIT_REFUSED, RunRequest, run_job

PATH = click.Path(dir_okay=False, path_type=Path)


@click.command("plan")
@click.argument("job_file", type=PATH, metavar="JOB.toml", required=False)
@click.option("-o", "--output", "out", type=PATH, metavar="PLAN.jsonl",
              help="Save the plan: each row's decision and the precondition it rests on, for "
              "review and `bulkgroups apply`.")
@click.option("--show", "show", type=PATH, metavar="PLAN.jsonl",
              help="Print a saved plan instead of making one.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def plan_command(job_file: Path | None, out: Path | None, show: Path | None,
                 as_json: bool) -> None:
    """Read the live groups the job names (GET only, at the job's rate) and print, per group
    and in total, the rows that would change something, those already done, those that
    would fail, the invalid ones, and what the safety rails would say. Changes nothing.

    Exits as the run would: 0 when no row would fail or is invalid, 1 otherwise, 3 when the
    run would be refused (max_changes, the group guard) or the credentials are refused, 2 on
    a job, input or plan-file error.
    """
    if show is not None:
        click.echo(render_saved(show), nl=False)
        return
    if job_file is None:
        fail("plan needs JOB.toml (or --show PLAN.jsonl)")
    job = load_job(job_file)
    saved = asyncio.run(unless_signalled(plan_job(job, environ=os.environ, out=out)))
    plan = saved.plan
    over = saved.over_limit if guard_active(job) else []
    if as_json:
        data = plan.to_json()
        data["safety"]["group_guard"] = [
            {"group": g.group, "size": g.size, "removing": g.removing} for g in over]
        click.echo(orjson.dumps(data).decode())
    else:
        target = f"{job.target.kind.value} {job.target.base_url or 'sandbox'}"
        click.echo(render_text(plan, job=job.name, kind=job.target.kind, target=target),
                   nl=False)
        if over:
            click.echo(f"group guard: would refuse (exit 3): {over_limit_text(over, job)}")
        if saved.path is not None:
            click.echo(f"plan saved to {saved.path}: review it with `bulkgroups plan --show "
                       f"{saved.path}`, carry it out with `bulkgroups apply {saved.path}`")
    sys.exit(EXIT_REFUSED if over or plan.would_refuse else plan.exit_code)


@click.command("apply")
@click.argument("plan_file", type=PATH, metavar="PLAN.jsonl")
@click.option("--results", type=PATH, help="Results file to write, overriding [output] results.")
@click.option("--yes", is_flag=True, help="Lift the group guard for this apply.")
@click.option("--quiet", is_flag=True, help="Print errors only.")
def apply_command(plan_file: Path, results: Path | None, yes: bool, quiet: bool) -> None:
    """Run exactly the `change` rows of a saved plan (`plan -o`), with the job's limits and
    rails, into the job's usual results file. Each row's precondition is checked against a
    fresh read of its group when it is sent: a row whose precondition no longer holds is
    not sent and ends `stale`. `already` rows end `noop`, `fail` and `invalid` rows as
    planned, all without a request; `resume` finishes an interrupted apply.

    Exits like `run` (1 when rows failed, were invalid or stale); 2 when the plan does not
    match its job, input or target any more (plan again), or is not a whole plan file.
    """
    header = read_header(plan_file)
    job = load_job(Path(header.job))
    # The send-time check is made on the adapter's own read of the group: it needs precheck.
    job = dataclasses.replace(job, limits=dataclasses.replace(job.limits, precheck=True))
    path = results_path(job, now=datetime.now().astimezone(), override=results)
    view = console.ConsoleView(quiet=quiet)
    summary = asyncio.run(run_job(job, RunRequest(results=path, plan=plan_file, yes=yes,
                                                  quiet=quiet), view=view))
    console.print_run(summary, quiet=quiet)
    sys.exit(summary.code)
