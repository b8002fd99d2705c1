"""The results files of a templated path: find the newest, keep only the newest N.

Only files whose path fits the template exactly count: `{date}` is YYYY-MM-DD and `{time}`
HHMMSS, so another job whose name starts the same, a `.meta.json` or a file someone put in
the folder by hand is never taken for a results file, and never deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import string
from pathlib import Path

from bulkgroups.job import Job
from bulkgroups.results.lock import Locked, lock_path, run_lock
from bulkgroups.results.file import meta_path, selection_path

_FIELD_RE = {"date": r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "time": r"[0-9]{6}"}

# One path component of the template: a plain name, or a pattern when {date}/{time} is in it.
_Component = str | re.Pattern[str]


def _components(job: Job) -> tuple[Path, list[_Component]]:
    """Where the template starts (the job's folder, or / for an absolute template) and its
    path components below that."""
    template = job.output.results
    comps: list[list[tuple[str, bool]]] = [[]]  # (text, is a {date}/{time} field)
    for literal, name, _, _ in string.Formatter().parse(template):
        # Formatter.parse has already turned "{{" and "}}" into single braces.
        first, *rest = literal.split("/")
        comps[-1].append((first, False))
        for piece in rest:
            comps.append([(piece, False)])
        if name == "job":
            comps[-1].append((job.name, False))
        elif name is not None:
            comps[-1].append((name, True))
    out: list[_Component] = []
    for comp in comps:
        if not any(text for text, _ in comp):
            continue  # the leading "/" of an absolute path, or "a//b"
        if any(is_field for _, is_field in comp):
            regex = "".join(_FIELD_RE[t] if f else re.escape(t) for t, f in comp)
            out.append(re.compile(regex))
        else:
            out.append("".join(t for t, _ in comp))
    base = Path("/") if template.startswith("/") else job.path.parent
    return base, out


def _root(job: Job) -> Path:
    """The deepest folder of the template that does not vary."""
    base, comps = _components(job)
    for comp in comps[:-1]:
        if not isinstance(comp, str):
            break
        base = base / comp
    return base


def _sort_key(p: Path) -> tuple[float, str]:
    try:
        return (p.stat().st_mtime, p.name)
    except FileNotFoundError:  # deleted since it was listed
        return (0.0, p.name)


def results_files(job: Job) -> list[Path]:
    """The job's results files, oldest first (by modification time, then name)."""
    base, comps = _components(job)
    paths = [base]
    for comp in comps:
        if isinstance(comp, str):
            paths = [p / comp for p in paths]
            continue
        found: list[Path] = []
        for p in paths:
            try:
                with os.scandir(p) as entries:
                    found += [p / e.name for e in entries if comp.fullmatch(e.name)]
            except OSError:  # no such folder (yet), or not a folder
                continue
        paths = found
    return sorted((p for p in paths if p.is_file()), key=_sort_key)


def latest_results(job: Job) -> Path | None:
    files = results_files(job)
    return files[-1] if files else None


def prune(job: Job, *, keep: int, current: Path | None = None) -> list[Path]:
    """Delete all but the newest `keep` results files with their metadata and lock; returns
    the removed ones. Never deletes `current` (the run that just finished), nor a file that
    another run or resume is working on right now (its lock is held). A file that cannot be
    deleted is left and not listed: pruning never fails a finished run."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    files = results_files(job)
    others = [p for p in files if current is None or not _same(p, current)]
    # The current run counts as one of the `keep`, whatever its age.
    room = keep - (len(files) - len(others))
    removed: list[Path] = []
    for path in others[: max(0, len(others) - room)]:
        try:
            # Holding the file's own run lock while deleting keeps a resume from starting
            # on a half-deleted run.
            with run_lock(path):
                path.unlink()
                for extra in (meta_path(path), lock_path(path), selection_path(path)):
                    with contextlib.suppress(FileNotFoundError):
                        extra.unlink()
        except (Locked, OSError):
            continue
        removed.append(path)
        _drop_empty_folders(path.parent, job)
    return removed


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


def _drop_empty_folders(folder: Path, job: Job) -> None:
    """A template like "results/{date}/{job}.jsonl" leaves a folder a day: remove the ones
    pruning emptied, up to the first folder that does not vary."""
    root = _root(job)
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty, or not ours to remove
            return
        folder = folder.parent
