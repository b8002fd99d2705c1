"""Puts a run together: lock, checks, metadata, pipeline, summary. Everything that talks to a
server is built in `wiring`; everything that moves rows is in `engine`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkgroups import __version__
from bulkgroups.cli import console
from bulkgroups.engine import Pipeline, StopReason, now_iso
from bulkgroups.export.directory import ReadFailed
from bulkgroups.export.write import ExportSummary, exported_job, for_run
from bulkgroups.http.auth import AuthRefused
from bulkgroups.identity import norm_id
from bulkgroups.job import Job
from bulkgroups.model import Item, Status, TargetKind
from bulkgroups.planning.checks import differences, file_sha256
from bulkgroups.planning.gate import guard_active, hold_for_review, over_limit_text
from bulkgroups.planning.planfile import read_header
from bulkgroups.planning.snapshot import (
    OnReadHook,
    SnapshotWriter,
    read_snapshots,
    snapshot_hook,
    snapshot_path,
)
from bulkgroups.planning.source import check_plan, plan_items, plan_over_limit
from bulkgroups.results.file import Fingerprint, ResultsWriter, read_meta, write_meta
from bulkgroups.results.lock import Locked, run_lock
from bulkgroups.results.resume import FinishedRows, unfinished
from bulkgroups.results.retention import prune
from bulkgroups.rows.dedupe import dedupe
from bulkgroups.rows.guard import count_changes, guard
from bulkgroups.rows.readers import count_lines, read_rows
from bulkgroups.targets.connect import connect, endpoint_for, worker_count

EXIT_OK, EXIT_ROWS, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

_EXIT_FOR_STOP = {
    StopReason.AUTH: EXIT_REFUSED,
    StopReason.TLS: EXIT_REFUSED,
    StopReason.FAILURE_RATIO: EXIT_REFUSED,
    StopReason.SIGINT: EXIT_SIGINT,
    StopReason.SIGTERM: EXIT_SIGTERM,
    StopReason.INTERNAL: EXIT_ROWS,
}


class RunRefused(Exception):
    """The run cannot start as asked; nothing was sent. `code` is the exit status."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RunRequest:
    results: Path
    resume: bool = False
    force: bool = False  # resume although the input changed since the run
    max_changes: int | None = None  # overrides [safety] max_changes for this run
    yes: bool = False  # no max_changes cap for this run
    quiet: bool = False
    plan: Path | None = None  # `apply`: run exactly this plan's rows (checked at send time)


def _fingerprint(path: Path) -> dict[str, Any]:
    fp = Fingerprint.of(path)
    return {"size": fp.size, "sha256": fp.sha256}


def _check_resumable(job: Job, req: RunRequest, prior: dict[str, Any] | None) -> None:
    if prior is None and not req.results.exists():
        raise RunRefused(f"{req.results}: no results to resume", code=EXIT_USAGE)
    recorded = (prior or {}).get("input_fingerprint")
    if recorded and recorded != _fingerprint(job.input.path) and not req.force:
        raise RunRefused(
            f"{job.input.path} changed since the run that wrote {req.results}: row numbers may "
            "no longer match; resume with --force only if the rows kept their order",
            code=EXIT_USAGE,
        )


def _install_signals(pipeline: Pipeline) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(reason: StopReason) -> None:
        if pipeline.stopping:
            pipeline.halt()
        else:
            pipeline.stop(reason)

    loop.add_signal_handler(signal.SIGINT, on_signal, StopReason.SIGINT)
    loop.add_signal_handler(signal.SIGTERM, on_signal, StopReason.SIGTERM)


def _exit_code(pipeline: Pipeline, earlier_invalid: int) -> int:
    if pipeline.stopping:
        return _EXIT_FOR_STOP[pipeline.reason]
    by = pipeline.tally.by_status
    attention = any(by[s] for s in Status if s.needs_attention)
    return EXIT_ROWS if attention or earlier_invalid else EXIT_OK


async def run_job(job: Job, req: RunRequest, *, environ: Mapping[str, str] | None = None) -> int:
    """Run (or resume) the job's rows; returns the exit status (DESIGN.md)."""
    try:
        with run_lock(req.results, job_name=job.name):
            return await _run_locked(job, req, os.environ if environ is None else environ)
    except Locked as exc:
        raise RunRefused(str(exc), code=EXIT_REFUSED) from None


async def _run_locked(job: Job, req: RunRequest, environ: Mapping[str, str]) -> int:
    selected: ExportSummary | None = None
    if job.input.select is not None:  # export's hook: this run's rows from the directory
        job, selected = await _select(job, req, environ)
    prior = read_meta(req.results)
    done: FinishedRows | None = None
    if req.resume:
        _check_resumable(job, req, prior)
        done = FinishedRows.from_results(req.results)
        if done.torn and not req.quiet:
            console.err.print(
                f"bulkgroups: {done.torn} unreadable line(s) in {req.results} skipped (a write "
                "cut short by a crash); their rows are sent again", markup=False)
    elif req.results.exists() and req.results.stat().st_size > 0:
        raise RunRefused(
            f"{req.results} already holds results: finish it with "
            f"`bulkgroups resume {req.results}`, or write elsewhere with --results",
            code=EXIT_USAGE,
        )

    def rows() -> Iterator[Item]:
        if req.plan is not None:
            planned = plan_items(req.plan, resumed=req.resume)
            return unfinished(planned, done) if done is not None else planned
        # dedupe before unfinished: a resume must see the rows a run finished to know which
        # later rows repeat them.
        items = dedupe(guard(
            read_rows(job.input.path, fmt=job.input.format, kind=job.target.kind,
                      default_op=job.input.op),
            job.safety.protected,
        ))
        return unfinished(items, done) if done is not None else items

    if req.plan is not None:
        _check_apply(job, req)
    elif not req.resume:
        await _hold_for_review(job, req, environ, rows)

    command = "resume" if req.resume else "apply" if req.plan is not None else "run"
    run_record: dict[str, Any] = {"command": command,
                                  "started_at": now_iso(), "pid": os.getpid()}
    meta = {
        **(prior or {}),
        "version": __version__,
        "job": str(job.path.resolve()),
        "job_name": job.name,
        "input": str(job.input.path.resolve()),
        "input_fingerprint": _fingerprint(job.input.path),
        "target": {"kind": job.target.kind.value, "base_url": job.target.base_url},
        # undo trusts a DocSpace `ok` removal only when the run read the group first.
        "limits": {"precheck": job.limits.precheck, "batch_size": job.limits.batch_size},
        "runs": [*(prior or {}).get("runs", []), run_record],
    }
    if selected is not None:
        run_record["selected"] = {"rows": selected.written, "groups": len(selected.groups),
                                  "unreadable": [g.group for g in selected.unreadable]}
    if req.plan is not None:
        meta["plan"] = str(req.plan.resolve())
    write_meta(req.results, meta)
    started = time.monotonic()
    writer = ResultsWriter(req.results)
    try:
        async with endpoint_for(job, environ=environ) as endpoint, connect(job, endpoint) as target:
            target.on_read = _snapshots(job, req.results)
            show = not req.quiet
            total = count_lines(job.input.path) if show and console.is_tty() else None
            with console.LiveProgress(total=total, enabled=show) as progress:
                pipeline = Pipeline(
                    target=target,
                    sink=writer.write,
                    workers=worker_count(job),
                    on_progress=progress.update,
                    abort_failure_ratio=job.safety.abort_failure_ratio,
                    abort_min_rows=job.safety.abort_min_rows,
                )
                if done is not None:
                    progress.skip(done.count)
                _install_signals(pipeline)
                await pipeline.run(rows())
    finally:
        writer.close()
    earlier_invalid = done.invalid if done is not None else 0
    code = _exit_code(pipeline, earlier_invalid)
    if selected is not None and selected.unreadable and code == EXIT_OK:
        code = EXIT_ROWS  # a group the selection could not read got no rows
    run_record.update(ended_at=now_iso(), counts=pipeline.tally.counts(), exit=code,
                      stopped=pipeline.reason.value if pipeline.stopping else None)
    write_meta(req.results, meta)
    if job.output.keep is not None and code in (EXIT_OK, EXIT_ROWS):
        # Only after a run that went through: a failed night must not push out good ones.
        prune(job, keep=job.output.keep, current=req.results)
    _report(pipeline, req, elapsed_s=time.monotonic() - started, code=code,
            already=done.count if done is not None else 0)
    return code


def _planned_input(plan: Path) -> Path:
    planned = Path(read_header(plan).input)
    if not planned.is_file():
        raise RunRefused(f"{plan}: the rows it was planned from ({planned}) are gone",
                         code=EXIT_USAGE)
    return planned


async def _select(job: Job, req: RunRequest, environ: Mapping[str, str]
                  ) -> tuple[Job, ExportSummary | None]:
    """A job with `[input] select`: export its rows beside the results (a resume uses the
    first run's file), say what was selected, and point the job at it. An `apply` (and its
    resume) runs the rows its plan was made from: the file the held run selected."""
    if req.plan is not None:
        return exported_job(job, _planned_input(req.plan)), None
    # The pipeline's signal handlers come later: until then a signal stops the reads at once
    # (nothing has been sent, no results exist) and the run exits 130/143 as documented.
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(for_run(job, req.results, resume=req.resume,
                                         environ=environ))
    stopped: list[int] = []

    def on_signal(code: int) -> None:
        stopped.append(code)
        task.cancel()

    loop.add_signal_handler(signal.SIGINT, on_signal, EXIT_SIGINT)
    loop.add_signal_handler(signal.SIGTERM, on_signal, EXIT_SIGTERM)
    try:
        job, summary = await task
    except asyncio.CancelledError:
        if not stopped:
            raise
        raise RunRefused("interrupted while selecting the rows: nothing was sent",
                         code=stopped[0]) from None
    except FileNotFoundError as exc:
        raise RunRefused(f"{exc}: the rows this run selected are gone, so it cannot be "
                         "resumed", code=EXIT_USAGE) from None
    except ReadFailed as exc:
        raise RunRefused(f"{exc}: nothing was selected or sent", code=EXIT_ROWS) from None
    except AuthRefused as exc:
        raise RunRefused(str(exc), code=EXIT_REFUSED) from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    if summary is not None:
        if not req.quiet:
            for line in summary.lines():
                console.out.print(line, markup=False)
        for g in summary.unreadable:
            console.err.print(f"bulkgroups: {g.group}: could not be read ({g.error}); no rows "
                              "selected from it", markup=False)
    return job, summary


def _snapshots(job: Job, results: Path) -> OnReadHook:
    """Each group's membership as first read, before the run changes it (exact undo). A
    resume keeps the snapshots of the first run: they are the state before it all."""
    path = snapshot_path(results)
    writer = SnapshotWriter(path, seen=read_snapshots(path))
    return snapshot_hook(writer, key=norm_id, now=now_iso,
                         hidden_unknown=job.target.kind is TargetKind.DOCSPACE)


def _over_cap(job: Job, req: RunRequest, rows: Callable[[], Iterator[Item]]) -> str | None:
    cap = job.safety.max_changes if req.max_changes is None else req.max_changes
    # A record takes at least a line: a file with no more lines than the cap cannot exceed it,
    # and then the rows need not be parsed an extra time before the run.
    if req.yes or count_lines(job.input.path) + 1 <= cap:
        return None
    changes = count_changes(rows())
    if changes <= cap:
        return None
    return (f"the input holds {changes:,} rows that would change something, over the "
            f"max_changes cap of {cap:,} (pass --max-changes {changes} or --yes to allow it "
            "for this run)")


async def _hold_for_review(job: Job, req: RunRequest, environ: Mapping[str, str],
                           rows: Callable[[], Iterator[Item]]) -> None:
    """Approval, the max_changes cap and the group guard: a run that must be looked at
    first is refused (exit 3) with a plan written for review."""
    over = _over_cap(job, req, rows)
    try:
        held = await hold_for_review(job, results=req.results, environ=environ,
                                     why_first=over, guard=not req.yes)
    except (OSError, AuthRefused) as exc:
        if over is None:
            raise
        raise RunRefused(f"{over}: nothing was sent (no plan could be written: {exc})",
                         code=EXIT_REFUSED) from None
    if held is not None:
        raise RunRefused(held.message(), code=EXIT_REFUSED)


def _check_apply(job: Job, req: RunRequest) -> None:
    """A plan runs only against the job, input and target it was made for; its removals
    still answer to the group guard."""
    assert req.plan is not None
    header = read_header(req.plan)
    fp = Fingerprint.of(job.input.path)
    differ = differences(
        header, job_sha256=file_sha256(job.path),
        target={"kind": job.target.kind.value, "base_url": job.target.base_url},
        input_path=job.input.path.resolve(),
        input_fingerprint={"size": fp.size, "sha256": fp.sha256},
    )
    if differ:
        raise RunRefused(f"{req.plan}: " + "; ".join(differ) + ": plan again", code=EXIT_USAGE)
    check_plan(req.plan)
    if req.yes or not guard_active(job):
        return
    over = plan_over_limit(req.plan, header, job)
    if over:
        raise RunRefused(over_limit_text(over, job), code=EXIT_REFUSED)


def _report(pipeline: Pipeline, req: RunRequest, *, elapsed_s: float, code: int,
            already: int) -> None:
    stopped = None
    if pipeline.stopping:
        stopped = pipeline.reason.value + (f": {pipeline.detail}" if pipeline.detail else "")
    if req.quiet:
        if stopped:
            console.err.print(f"bulkgroups: stopped: {stopped}", markup=False)
        return
    unfinished_rows = pipeline.stopping or pipeline.tally.by_status[Status.FAILED] > 0
    hint = f"bulkgroups resume {req.results}" if unfinished_rows else None
    console.print_summary(pipeline.tally, elapsed_s=elapsed_s, results=req.results,
                          stopped=stopped, resume_hint=hint, already=already)
