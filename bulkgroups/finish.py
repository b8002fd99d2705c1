"""What happens after every run, whatever its end (done, rows failed, refused, interrupted):
the metrics file is written and, where a person should hear of it, a webhook is posted.

The runner calls `finish` once, from a `finally`; nothing here can change the run's exit
status: every failure becomes a warning on stderr.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkgroups.job import Job
from bulkgroups.model import Status
from bulkgroups.results.file import read_meta
from bulkgroups.results.report import parse_time
from bulkgroups.rows.readers import InputError, read_rows

NOT_REACHED = "not_reached"  # rows of the input this run never finished
ROW_STATES = (*(s.value for s in Status), NOT_REACHED)
COMPLETED_EXITS = frozenset({0, 1})  # the run got through its input


@dataclass(frozen=True, slots=True)
class RunEnd:
    """One run as monitoring and notifications see it."""

    job: str
    results: Path
    started: float  # POSIX seconds
    ended: float
    code: int  # the exit status
    command: str = "run"  # "run" | "resume"
    stopped: str | None = None  # the stop reason, or the refusal's message
    counts: Mapping[str, int] = field(default_factory=dict)  # this run's rows by status
    not_reached: int | None = None  # None: not known (the input could not be read)
    already: int = 0  # rows a resume found finished and skipped

    @property
    def completed(self) -> bool:
        return self.code in COMPLETED_EXITS

    @property
    def failed(self) -> int:
        return self.counts.get(Status.FAILED.value, 0)

    @property
    def needs_person(self) -> bool:
        """Failed rows, a refusal, an abort or an interruption; rows only invalid do not
        (they are in the metrics, and the input is fixed in the daytime)."""
        return self.failed > 0 or not self.completed or bool(self.not_reached)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "results": str(self.results),
            "command": self.command,
            "exit": self.code,
            "stopped": self.stopped,
            "started_at": _iso(self.started),
            "ended_at": _iso(self.ended),
            "seconds": round(max(0.0, self.ended - self.started), 3),
            "counts": {s: self.counts.get(s, 0) for s in ROW_STATES if s != NOT_REACHED},
            "not_reached": self.not_reached,
            "already_finished": self.already,
        }


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def count_records(job: Job, stop: threading.Event | None = None) -> int | None:
    """The input's records (rows, valid or not), by reading it through; None when it cannot
    be read or `stop` is set first."""
    n = 0
    try:
        for _ in read_rows(job.input.path, fmt=job.input.format, kind=job.target.kind,
                           default_op=job.input.op):
            n += 1
            if stop is not None and not n % 4096 and stop.is_set():
                return None
    except (OSError, InputError):
        return None
    return n


class RecordCount:
    """Counts the input's records in a thread while the run goes on, so that a run stopped
    early can say how many rows it never reached without reading the input again after the
    signal (reading a million rows takes seconds; a stopped run must exit within timeout_s
    + 1 s). About 5 µs a row of CPU, once, beside a run paced at a few dozen rows a second."""

    def __init__(self, job: Job) -> None:
        self._stop = threading.Event()
        self._result: int | None = None
        self._thread = threading.Thread(target=self._count, args=(job,), daemon=True,
                                        name="bulkgroups-count")
        self._thread.start()

    def _count(self, job: Job) -> None:
        self._result = count_records(job, self._stop)

    def result(self, timeout: float | None) -> int | None:
        """The count, waiting up to `timeout` seconds (None: as long as it takes)."""
        self._thread.join(timeout)
        return None if self._thread.is_alive() else self._result

    def cancel(self) -> None:
        self._stop.set()


def run_end(job: Job, results: Path, *, since: str, started: float, code: int,
            message: str | None = None) -> RunEnd:
    """The run's end from the run record the runner wrote into RESULTS.meta.json (this
    process's record that started at or after `since`); a run refused before it wrote one
    (the lock, the max_changes cap, a job-file error) counts every input row as not reached."""
    record = _own_record(results, since)
    now = time.time()
    if record is None or "ended_at" not in record:
        # Refused before the pipeline ran, or it never got to its end (a job-file error
        # found when the credentials were read): no input row was reached by this run.
        # After a signal, no pass over the input: the run must exit at once.
        total = None if code in (0, 130, 143) else count_records(job)
        return RunEnd(job=job.name, results=results, started=started, ended=now, code=code,
                      stopped=message, not_reached=total)
    counts = record.get("counts")
    counts = {k: v for k, v in counts.items() if isinstance(v, int)} \
        if isinstance(counts, dict) else {}
    not_reached = record.get("not_reached")
    if not isinstance(not_reached, int):
        not_reached = 0 if code in COMPLETED_EXITS and record.get("stopped") is None else None
    stopped = record.get("stopped")
    return RunEnd(
        job=job.name, results=results,
        started=parse_time(record.get("started_at")) or started,
        ended=parse_time(record.get("ended_at")) or now,
        code=code,
        command=str(record.get("command") or "run"),
        stopped=message if message is not None else (stopped if isinstance(stopped, str)
                                                     else None),
        counts=counts, not_reached=not_reached,
        already=already if isinstance(already := record.get("already"), int) else 0,
    )


def _own_record(results: Path, since: str) -> dict[str, Any] | None:
    try:
        meta = read_meta(results)
    except (OSError, ValueError):
        return None
    runs = (meta or {}).get("runs")
    if not isinstance(runs, list) or not runs or not isinstance(runs[-1], dict):
        return None
    last = runs[-1]
    started_at = last.get("started_at")
    # A run refused by the lock finds the record of the run that holds it: not ours.
    if last.get("pid") != os.getpid() or not isinstance(started_at, str) or started_at < since:
        return None
    return last


def warn(message: str) -> None:
    print(f"bulkgroups: warning: {message}", file=sys.stderr, flush=True)


async def finish(job: Job, ended: Callable[[], RunEnd], *,
                 environ: Mapping[str, str]) -> None:
    """Metrics, then the notification; neither raises. `ended` is called only when the job
    asks for either (it may read the input through to count the rows not reached)."""
    if job.output.metrics is None and job.notify.webhook_env is None:
        return
    from bulkgroups import notify
    from bulkgroups.results import metrics

    try:
        end = ended()
    except Exception as exc:
        warn(f"no metrics or notification: the run's end could not be read ({exc})")
        return

    if job.output.metrics is not None:
        try:
            metrics.write_metrics(job.output.metrics, end)
        except Exception as exc:  # a full disk must not turn a good night into a failed one
            warn(f"{job.output.metrics}: metrics not written: {exc}")
    if job.notify.webhook_env is not None and end.needs_person:
        await notify.notify(job.notify.webhook_env, end, environ=environ, warn=warn)
