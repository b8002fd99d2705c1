"""`[output] metrics = "PATH.prom"`: the run's figures for node_exporter's textfile collector.

Written with prometheus_client into a registry of our own (never the process-wide default),
atomically: `write_to_textfile` writes a temporary file beside PATH and renames it, so the
collector reads the old file or the new one, never half of one. One file per job.

`bulkgroups_last_completed_timestamp_seconds` is kept across runs: a refused or interrupted
run copies the previous file's value, read back with prometheus_client's own parser, so an
alert on "no completed run for 26 h" keeps counting from the last good night. 0 means no
run of this job ever got through its input.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from bulkgroups.finish import NOT_REACHED, ROW_STATES, RunEnd

LAST_COMPLETED = "bulkgroups_last_completed_timestamp_seconds"


def previous_completed(path: Path, job: str) -> float | None:
    """The last-completed time the previous file recorded for `job`, or None."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        for family in text_string_to_metric_families(text):
            if family.name != LAST_COMPLETED:
                continue
            for sample in family.samples:
                if sample.name == LAST_COMPLETED and sample.labels.get("job") == job:
                    return float(sample.value)
    except ValueError:
        return None  # a file someone else wrote, or damaged: start afresh
    return None


def build_registry(end: RunEnd, *, previous: float | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    job = end.job

    rows = Gauge("bulkgroups_rows", "Rows of the last run by final status (not_reached: rows "
                 "of the input the run never finished)", ["job", "status"], registry=registry)
    for status in ROW_STATES:
        if status == NOT_REACHED:
            value = end.not_reached if end.not_reached is not None else 0
        else:
            value = end.counts.get(status, 0)
        rows.labels(job=job, status=status).set(value)
    Gauge("bulkgroups_run_seconds", "Wall time of the last run", ["job"],
          registry=registry).labels(job=job).set(round(max(0.0, end.ended - end.started), 3))
    Gauge("bulkgroups_exit_code", "Exit status of the last run (0 ok, 1 rows failed or "
          "invalid, 2 job error, 3 refused or aborted, 130/143 interrupted)", ["job"],
          registry=registry).labels(job=job).set(end.code)
    Gauge("bulkgroups_last_run_timestamp_seconds", "When the last run ended (POSIX seconds)",
          ["job"], registry=registry).labels(job=job).set(end.ended)
    completed = end.ended if end.completed else (previous or 0.0)
    Gauge(LAST_COMPLETED, "When the last run that got through its input (exit 0 or 1) ended; "
          "0: none yet", ["job"], registry=registry).labels(job=job).set(completed)
    Gauge("bulkgroups_rows_already_finished", "Rows a resume found finished and skipped",
          ["job"], registry=registry).labels(job=job).set(end.already)
    return registry


def write_metrics(path: Path, end: RunEnd) -> None:
    """Replace PATH with this run's metrics (temporary file + rename)."""
    previous = previous_completed(path, end.job)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), build_registry(end, previous=previous))
