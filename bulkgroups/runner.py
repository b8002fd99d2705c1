"""Puts a run together: lock, checks, metadata, pipeline, summary. Everything that talks to a
server is built in `targets.connect`; everything that moves rows is in `engine`; the rows
come from `rows.source`. Nothing here prints: what a person sees is the CLI's `RunView`, and
the run's end is the `RunSummary` returned."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bulkgroups import __version__
from bulkgroups.display import shown
from bulkgroups.engine import Pipeline, StopReason, now_iso
from bulkgroups.exits import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_ROWS,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    Interrupted,
    unless_signalled,
)
from bulkgroups.export.directory import ReadFailed
from bulkgroups.export.write import ExportSummary, exported_job, for_run
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
from bulkgroups.results.file import (
    Fingerprint,
    ReservedWriter,
    ResultsFileError,
    ResultsUnwritable,
    read_meta,
    write_meta,
)
from bulkgroups.results.lock import Locked, run_lock
from bulkgroups.results.resume import FinishedRows, unfinished
from bulkgroups.results.retention import prune
from bulkgroups.results.stats import Tally
from bulkgroups.rows.readers import InputError, count_lines
from bulkgroups.rows.source import InputSnapshot, census, rows_for
from bulkgroups.targets.connect import (
    Endpoint,
    connect,
    endpoint_for,
    requests_sent,
    worker_count,
)

__all__ = [
    "EXIT_OK", "EXIT_REFUSED", "EXIT_ROWS", "EXIT_SIGINT", "EXIT_SIGTERM", "EXIT_USAGE",
    "RunRefused", "RunRequest", "RunSummary", "RunView", "run_job",
]

_EXIT_FOR_STOP = {
    StopReason.AUTH: EXIT_REFUSED,
    StopReason.TLS: EXIT_REFUSED,
    StopReason.FAILURE_RATIO: EXIT_REFUSED,
    StopReason.RESULTS: EXIT_REFUSED,
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


Progress = Callable[[Tally], None]


class RunView(Protocol):
    """What a person sees of a run while it goes, supplied by the CLI."""

    @property
    def wants_total(self) -> bool:
        """Whether `progress` shows a total (worth a pass over the rows to count them)."""
        ...

    def warn(self, message: str) -> None: ...

    def say(self, message: str) -> None:
        """A line of what the run found before it starts (a selection's counts)."""
        ...

    def progress(self, total: int | None) -> AbstractContextManager[Progress]:
        """A progress display for the run's `total` rows (None: unknown), open while the
        pipeline runs; it is called with the tally as rows finish."""
        ...


class Unseen:
    """A RunView that shows nothing (benchmarks, tests, embedding)."""

    wants_total = False

    def warn(self, message: str) -> None:
        pass

    def say(self, message: str) -> None:
        pass

    def progress(self, total: int | None) -> AbstractContextManager[Progress]:
        return contextlib.nullcontext(lambda _tally: None)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a run ended, for the CLI to print: `code` is the exit status (DESIGN.md)."""

    code: int
    results: Path
    tally: Tally
    elapsed_s: float
    stopped: str | None = None  # why the run stopped early ("reason: detail")
    already: int = 0  # rows a resume found final and did not run again
    not_reached: int | None = None  # a stopped run: input rows it never finished (None: unknown)
    requests_sent: int = 0  # put on the wire, sign-in included (a row may not have finished)
    notes: tuple[str, ...] = field(default=())  # facts about the input worth a line

    @property
    def unfinished(self) -> bool:
        """Some rows have no final outcome yet: `resume` would send them."""
        return self.stopped is not None or self.tally.by_status[Status.FAILED] > 0


@dataclass(slots=True)
class _Start:
    """What a run knows before it sends anything."""

    snapshot: InputSnapshot
    # The most rows the input can have (a record takes at least a line): it bounds the
    # resume index and is recorded for report and undo, which skip a row number past it.
    max_row: int
    done: FinishedRows | None = None
    notes: list[str] = field(default_factory=list)


def _check_resumable(job: Job, req: RunRequest, prior: dict[str, Any] | None,
                     start: _Start) -> None:
    """A resume reads the bytes the run read: refused (exit 2) when those changed, unless
    forced; an input that only grew is fine, its new rows being no part of these results."""
    if prior is None and not req.results.exists():
        raise RunRefused(f"{shown(req.results)}: no results to resume", code=EXIT_USAGE)
    path = job.input.path
    recorded = InputSnapshot.from_json((prior or {}).get("input_fingerprint"))
    if recorded is None or req.force:
        return
    if not recorded.still_in(path):
        raise RunRefused(
            f"{shown(path)} changed since the run that wrote {shown(req.results)}: row numbers may "
            "no longer match; resume with --force only if the rows kept their order",
            code=EXIT_USAGE,
        )
    start.snapshot = recorded
    grown = path.stat().st_size - recorded.size
    if grown > 0:
        start.notes.append(
            f"{shown(path)} has grown by {grown:,} bytes since the run that wrote "
            f"{shown(req.results)}: those rows are not part of it and are not sent; run the "
            "job again for them")


def _begin(job: Job, req: RunRequest, prior: dict[str, Any] | None, view: RunView) -> _Start:
    snapshot = InputSnapshot.of(job.input.path)
    start = _Start(snapshot=snapshot, max_row=count_lines(job.input.path, snapshot.size) + 1)
    if req.resume:
        _check_resumable(job, req, prior, start)
        done = start.done = FinishedRows.from_results(req.results, input_rows=start.max_row)
        if done.torn and not req.quiet:
            view.warn(f"{done.torn} unreadable line(s) in {shown(req.results)} skipped "
                      "(a write cut short by a crash); their rows are sent again")
        if done.out_of_range and not req.quiet:
            view.warn(f"{done.out_of_range} line(s) in {shown(req.results)} name a row outside "
                      f"1..{start.max_row:,} (the input has no more rows): skipped as damaged")
    elif req.results.is_dir():
        raise ResultsFileError(req.results, "is a folder, not a results file")
    elif req.results.exists() and req.results.stat().st_size > 0:
        raise RunRefused(
            f"{shown(req.results)} already holds results: finish it with "
            f"`bulkgroups resume {shown(req.results)}`, or write elsewhere with --results",
            code=EXIT_USAGE,
        )
    return start


def _total(rows: Callable[[], Iterator[Item]], *, wanted: bool) -> int | None:
    """The rows this run will take, counted from the same source it sends (for the progress
    bar's total: records, not lines), when the view wants it."""
    return census(rows()).rows if wanted else None


def _meta(job: Job, prior: dict[str, Any] | None, snapshot: InputSnapshot, max_row: int,
          run_record: dict[str, Any]) -> dict[str, Any]:
    return {
        **(prior or {}),
        "version": __version__,
        "job": str(job.path.resolve()),
        "job_name": job.name,
        "input": str(job.input.path.resolve()),
        "input_fingerprint": snapshot.to_json(),
        # The most rows the input can have: report and undo skip a row number past it.
        "max_row": max_row,
        "target": {"kind": job.target.kind.value, "base_url": job.target.base_url},
        # undo trusts a DocSpace `ok` removal only when the run read the group first.
        "limits": {"precheck": job.limits.precheck, "batch_size": job.limits.batch_size},
        "runs": [*(prior or {}).get("runs", []), run_record],
    }


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


async def run_job(job: Job, req: RunRequest, *, environ: Mapping[str, str] | None = None,
                  view: RunView | None = None) -> RunSummary:
    """Run (or resume) the job's rows; the summary's `code` is the exit status."""
    env = os.environ if environ is None else environ
    since, started = now_iso(), time.time()
    code, message = EXIT_ROWS, None  # what Python exits with when an exception escapes
    try:
        # The credential is loaded (and a sandbox job's emulator started) before anything is
        # created: a job-file error or an unset token variable leaves no lock, no results and
        # no metadata behind. No request is sent yet.
        async with endpoint_for(job, environ=env) as endpoint:
            with run_lock(req.results, job_name=job.name):
                summary = await _run_locked(job, req, env, endpoint,
                                            Unseen() if view is None else view)
                code = summary.code
                return summary
    except Locked as exc:
        code, message = EXIT_REFUSED, str(exc)
        raise RunRefused(str(exc), code=EXIT_REFUSED) from None
    except ResultsFileError as exc:
        # Found before the first request (the results, their metadata or their folder):
        # a usage error, nothing sent.
        code, message = EXIT_USAGE, str(exc)
        raise RunRefused(str(exc), code=EXIT_USAGE) from None
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
        # The finish hook: metrics and notification after every run, refused and
        # interrupted ones included; it never raises and never changes `code`.
        await finish(job, lambda: run_end(job, req.results, since=since, started=started,
                                          code=code, message=message), environ=env)


async def _run_locked(job: Job, req: RunRequest, environ: Mapping[str, str],
                      endpoint: Endpoint, view: RunView) -> RunSummary:
    selected: ExportSummary | None = None
    if job.input.select is not None:  # this run's rows, exported from the directory
        job, selected = await _select(job, req, environ, view)
    prior = read_meta(req.results)
    start = _begin(job, req, prior, view)
    done = start.done

    def rows() -> Iterator[Item]:
        if req.plan is not None:
            planned = plan_items(req.plan, resumed=req.resume)
            return unfinished(planned, done) if done is not None else planned
        return rows_for(job, resume_index=done, upto=start.snapshot.size)

    if req.plan is not None:
        _check_apply(job, req)
    elif not req.resume:
        await _hold_for_review(job, req, environ, rows, start.snapshot.size)
    total = _total(rows, wanted=view.wants_total and not req.quiet)
    command = "resume" if req.resume else "apply" if req.plan is not None else "run"
    run_record: dict[str, Any] = {"command": command,
                                  "started_at": now_iso(), "pid": os.getpid()}
    meta = _meta(job, prior, start.snapshot, start.max_row, run_record)
    if selected is not None:
        run_record["selected"] = {"rows": selected.written, "groups": len(selected.groups),
                                  "unreadable": [g.group for g in selected.unreadable]}
    if req.plan is not None:
        meta["plan"] = str(req.plan.resolve())
    # Raises ResultsFileError (read-only folder, a folder in the file's place): exit 2,
    # before the first request.
    write_meta(req.results, meta)
    started = time.monotonic()
    counting = RecordCount(job)
    try:
        pipeline, sent = await _drive(job, req, endpoint, view, rows(), total)
    except ResultsUnwritable as exc:
        # Backstop: the engine stops the run itself when its sink raises (exit 3); should the
        # error come through, the run still ends as "cannot write the results", not a
        # traceback.
        run_record.update(ended_at=now_iso(), exit=EXIT_REFUSED, stopped="results unwritable")
        _end_meta(req, meta, view)
        raise RunRefused(str(exc), code=EXIT_REFUSED) from None
    earlier_invalid = done.invalid if done is not None else 0
    code = _exit_code(pipeline, earlier_invalid)
    if selected is not None and selected.unreadable and code == EXIT_OK:
        code = EXIT_ROWS  # a group the selection could not read got no rows
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
    _end_meta(req, meta, view)
    if job.output.keep is not None and code in (EXIT_OK, EXIT_ROWS):
        # Only after a run that went through: a failed night must not push out good ones.
        prune(job, keep=job.output.keep, current=req.results)
    stopped = None
    if pipeline.stopping:
        stopped = pipeline.reason.value + (f": {pipeline.detail}" if pipeline.detail else "")
    return RunSummary(code=code, results=req.results, tally=pipeline.tally,
                      elapsed_s=time.monotonic() - started, stopped=stopped,
                      already=already, notes=tuple(start.notes),
                      not_reached=not_reached if pipeline.stopping else None,
                      requests_sent=sent)


def _end_meta(req: RunRequest, meta: Mapping[str, Any], view: RunView) -> None:
    """The run's end, in the metadata. The outcomes are written already: a metadata file that
    cannot be replaced now (a full disk) is said, and does not change the exit status."""
    try:
        write_meta(req.results, meta)
    except ResultsFileError as exc:
        view.warn(f"warning: {exc}")


async def _drive(job: Job, req: RunRequest, endpoint: Endpoint, view: RunView,
                 items: Iterator[Item], total: int | None) -> tuple[Pipeline, int]:
    """The pipeline as it ended, and the requests it put on the wire."""
    limits = job.limits
    writer = ReservedWriter(req.results,
                            rows_out=limits.concurrency * max(1, limits.batch_size))
    try:
        async with connect(job, endpoint) as target:
            for warning in endpoint.warnings:
                view.warn(warning)
            target.on_read = _snapshots(job, req.results)
            shown = Unseen() if req.quiet else view
            with shown.progress(total) as progress:
                pipeline = Pipeline(
                    target=target,
                    sink=writer.write,
                    make_room=writer.make_room,
                    workers=worker_count(job),
                    on_progress=progress,
                    abort_failure_ratio=job.safety.abort_failure_ratio,
                    abort_min_rows=job.safety.abort_min_rows,
                    # A stop waits for requests in flight (each ends within its timeout),
                    # never for a pause or a retry: exit within timeout_s + 1 s.
                    stop_grace_s=job.limits.timeout_s,
                )
                _install_signals(pipeline)
                await pipeline.run(items)
            sent = requests_sent(target)
    finally:
        writer.close()
    return pipeline, sent


def _planned_input(plan: Path) -> Path:
    planned = Path(read_header(plan).input)
    if not planned.is_file():
        raise RunRefused(f"{plan}: the rows it was planned from ({planned}) are gone",
                         code=EXIT_USAGE)
    return planned


async def _select(job: Job, req: RunRequest, environ: Mapping[str, str], view: RunView
                  ) -> tuple[Job, ExportSummary | None]:
    """A job with `[input] select`: export its rows beside the results (a resume uses the
    first run's file), say what was selected, and point the job at it. An `apply` (and its
    resume) runs the rows its plan was made from: the file the held run selected."""
    if req.plan is not None:
        return exported_job(job, _planned_input(req.plan)), None
    # The pipeline's signal handlers come later: until then a signal stops the reads at once
    # (nothing has been sent, no results exist) and the run exits 130/143 as documented.
    try:
        job, summary = await unless_signalled(
            for_run(job, req.results, resume=req.resume, environ=environ))
    except Interrupted as exc:
        raise RunRefused("interrupted while selecting the rows: nothing was sent",
                         code=exc.code) from None
    except FileNotFoundError as exc:
        raise RunRefused(f"{exc}: the rows this run selected are gone, so it cannot be "
                         "resumed", code=EXIT_USAGE) from None
    except ReadFailed as exc:
        raise RunRefused(f"{exc}: nothing was selected or sent", code=EXIT_ROWS) from None
    except AuthRefused as exc:
        raise RunRefused(str(exc), code=EXIT_REFUSED) from None
    if summary is not None:
        if not req.quiet:
            for line in summary.lines():
                view.say(line)
        for g in summary.unreadable:
            view.warn(f"{g.group}: could not be read ({g.error}); no rows selected from it")
    return job, summary


def _snapshots(job: Job, results: Path) -> OnReadHook:
    """Each group's membership as first read, before the run changes it (exact undo). A
    resume keeps the snapshots of the first run: they are the state before it all."""
    path = snapshot_path(results)
    writer = SnapshotWriter(path, seen=read_snapshots(path))
    return snapshot_hook(writer, key=norm_id, now=now_iso,
                         hidden_unknown=job.target.kind is TargetKind.DOCSPACE)


def _over_cap(job: Job, req: RunRequest, rows: Callable[[], Iterator[Item]],
              upto: int) -> str | None:
    """Why the run is over its max_changes cap, counted on the rows it would send (the
    same source, cut at the fingerprinted size), or None."""
    cap = job.safety.max_changes if req.max_changes is None else req.max_changes
    # A record takes at least a line: a file with no more lines than the cap cannot exceed it,
    # and then the rows need not be parsed an extra time before the run.
    if req.yes or count_lines(job.input.path, upto) + 1 <= cap:
        return None
    changes = census(rows()).changes
    if changes <= cap:
        return None
    return (f"the input holds {changes:,} rows that would change something, over the "
            f"max_changes cap of {cap:,} (pass --max-changes {changes} or --yes to allow it "
            "for this run)")


async def _hold_for_review(job: Job, req: RunRequest, environ: Mapping[str, str],
                           rows: Callable[[], Iterator[Item]], upto: int) -> None:
    """Approval, the max_changes cap and the group guard: a run that must be looked at
    first is refused (exit 3) with a plan written for review."""
    over = _over_cap(job, req, rows, upto)
    try:
        # The guard reads every group first (1,000 DocSpace groups at rate 24: 83 s); the
        # run's own signal handlers come later, and a SIGTERM here would kill the process.
        held = await unless_signalled(hold_for_review(
            job, results=req.results, environ=environ, why_first=over, guard=not req.yes))
    except Interrupted as exc:
        raise RunRefused("interrupted while reading the groups before the first change: "
                         "nothing was sent", code=exc.code) from None
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
