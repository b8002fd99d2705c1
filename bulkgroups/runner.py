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
from bulkgroups.finish import RecordCount, finish, run_end
from bulkgroups.http.auth import AuthRefused
from bulkgroups.identity import norm_id
from bulkgroups.job import Job, JobError
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
from bulkgroups.rows.readers import InputError, count_lines, read_rows
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
    env = os.environ if environ is None else environ
    since, started = now_iso(), time.time()
    code, message = EXIT_ROWS, None  # what Python exits with when an exception escapes
    try:
        with run_lock(req.results, job_name=job.name):
            code = await _run_locked(job, req, env)
            return code
    except Locked as exc:
        code, message = EXIT_REFUSED, str(exc)
        raise RunRefused(str(exc), code=EXIT_REFUSED) from None
    except RunRefused as exc:
        code, message = exc.code, str(exc)
        raise
    except (JobError, InputError) as exc:
        code, message = EXIT_USAGE, str(exc)
        raise
    except KeyboardInterrupt:  # a Ctrl-C before the run's own handler is installed
        code, message = EXIT_SIGINT, "interrupted (SIGINT)"
        raise
    finally:
        # The finish hook (ops): metrics and notification after every run, refused and
        # interrupted ones included; it never raises and never changes `code`.
        await finish(job, lambda: run_end(job, req.results, since=since, started=started,
                                          code=code, message=message), environ=env)


async def _run_locked(job: Job, req: RunRequest, environ: Mapping[str, str]) -> int:
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
    if req.plan is not None:
        meta["plan"] = str(req.plan.resolve())
    write_meta(req.results, meta)
    started = time.monotonic()
    counting = RecordCount(job)
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
    already = done.count if done is not None else 0
    # A run that stopped early says how many input rows it never finished (resume sends them);
    # after a signal it waits at most a second for the count (None: not known).
    not_reached: int | None = 0
    if pipeline.stopping:
        signalled = pipeline.reason in (StopReason.SIGINT, StopReason.SIGTERM)
        total = counting.result(timeout=1.0 if signalled else None)
        not_reached = None if total is None else max(0, total - already - pipeline.tally.finished)
    counting.cancel()
    run_record.update(ended_at=now_iso(), counts=pipeline.tally.counts(), exit=code,
                      stopped=pipeline.reason.value if pipeline.stopping else None,
                      stop_detail=pipeline.detail or None, not_reached=not_reached,
                      already=already)
    write_meta(req.results, meta)
    if job.output.keep is not None and code in (EXIT_OK, EXIT_ROWS):
        # Only after a run that went through: a failed night must not push out good ones.
        prune(job, keep=job.output.keep, current=req.results)
    _report(pipeline, req, elapsed_s=time.monotonic() - started, code=code,
            already=already, not_reached=not_reached if pipeline.stopping else None)
    return code


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
            already: int, not_reached: int | None = None) -> None:
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
                          stopped=stopped, resume_hint=hint, already=already,
                          not_reached=not_reached)
