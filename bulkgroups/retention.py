"""The results files of a templated path: find the newest, keep only the newest N."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bulkgroups.job import Job
from bulkgroups.lock import lock_path
from bulkgroups.results import meta_path


def _pattern(job: Job) -> Path:
    template = job.output.results
    glob = template.replace("{job}", job.name).replace("{date}", "*").replace("{time}", "*")
    path = Path(glob)
    return path if path.is_absolute() else job.path.parent / path


def results_files(job: Job) -> list[Path]:
    """The job's results files, oldest first (by modification time, then name)."""
    pattern = _pattern(job)
    found = [p for p in pattern.parent.glob(pattern.name) if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def latest_results(job: Job) -> Path | None:
    files = results_files(job)
    return files[-1] if files else None


def prune(job: Job, *, keep: int) -> list[Path]:
    """Delete all but the newest `keep` results files with their metadata; returns the removed."""
    removed = results_files(job)[:-keep] if keep > 0 else []
    for path in removed:
        for p in (path, meta_path(path), lock_path(path)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return removed
