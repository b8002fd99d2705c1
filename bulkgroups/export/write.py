"""An export from start to end: read the selected groups, drop protected and excluded ids,
write one input row per member taken (the file appears whole, mode 600, or not at all).

Also what a job with `[input] select` needs: the rows of a run exported beside its results
(`for_run`), and a throwaway export for `validate`, `plan` and `--dry-run` (`to_temp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bulkgroups.export.directory import (
    GroupRead,
    ReadFailed,
    docspace_groups,
    read_adaxes,
    read_docspace,
)
from bulkgroups.export.select import Selection
from bulkgroups.http.transport import Transport
from bulkgroups.identity import id_problem, norm_id
from bulkgroups.job import Job
from bulkgroups.model import Op, TargetKind
from bulkgroups.results.file import selection_path
from bulkgroups.results.undo import Format, InputFileWriter, InputRow
from bulkgroups.rows.readers import InputError
from bulkgroups.targets.connect import endpoint_for, open_transport

__all__ = ["ExportSummary", "GroupCount", "ReadFailed", "export", "for_run",
           "read_exclude", "selection_path", "to_temp"]


@dataclass(slots=True)
class GroupCount:
    group: str
    name: str | None = None
    seen: int = 0  # members read
    written: int = 0
    protected: int = 0
    excluded: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)  # of the rows written
    skipped: str | None = None  # not read on purpose (protected, the destination)
    error: str | None = None  # could not be read: nothing written for it

    def line(self) -> str:
        label = f"{self.group} ({self.name})" if self.name else self.group
        if self.error:
            return f"{label}: NOT EXPORTED, {self.error}"
        if self.skipped:
            return f"{label}: skipped, {self.skipped}"
        kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(self.by_kind.items()))
        held = [f"{n:,} {what}" for n, what in ((self.protected, "protected"),
                                                (self.excluded, "excluded")) if n]
        return (f"{label}: {self.written:,} rows from {self.seen:,} members read"
                + (f" ({kinds})" if kinds else "")
                + (f"; left out: {', '.join(held)}" if held else ""))


@dataclass(slots=True)
class ExportSummary:
    path: Path
    groups: list[GroupCount] = field(default_factory=list)
    written: int = 0

    @property
    def unreadable(self) -> list[GroupCount]:
        return [g for g in self.groups if g.error]

    def lines(self, *, kept: bool = True) -> list[str]:
        out = [g.line() for g in self.groups]
        where = f" to {self.path}" if kept else ""
        groups = f"{len(self.groups):,} group" + ("" if len(self.groups) == 1 else "s")
        out.append(f"selected {self.written:,} rows from {groups}{where}")
        if self.unreadable:
            out.append(f"{len(self.unreadable):,} groups could not be read: nothing was "
                       "written for them")
        return out


def read_exclude(path: Path, kind: TargetKind) -> frozenset[str]:
    """Ids never exported: one a line (a DN holds commas, so no CSV); blank lines and lines
    starting with # are skipped. ValueError names the line of an id that cannot be one."""
    out: set[str] = set()
    with path.open(encoding="utf-8-sig") as f:
        for n, raw in enumerate(f, 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            problem = id_problem(kind, text)
            if problem is not None:
                raise ValueError(f"{path}:{n}: {text!r}: {problem}")
            out.add(norm_id(text))
    return frozenset(out)


def _row(sel: Selection, group: str, member: str) -> InputRow:
    if sel.op is Op.ADD:
        assert sel.to_group is not None
        return InputRow(Op.ADD.value, sel.to_group, member)
    if sel.op is Op.MOVE:
        assert sel.to_group is not None
        return InputRow(Op.MOVE.value, group, member, sel.to_group)
    return InputRow(Op.REMOVE.value, group, member)


async def _read_all(t: Transport, kind: TargetKind, groups: list[str], sel: Selection,
                    workers: int) -> dict[int, GroupRead]:
    read = read_docspace if kind is TargetKind.DOCSPACE else read_adaxes
    todo = iter(enumerate(groups))  # shared by the workers: each takes the next group
    out: dict[int, GroupRead] = {}

    async def work() -> None:
        for i, group in todo:
            out[i] = await read(t, group, sel)

    await asyncio.gather(*(work() for _ in range(max(1, min(workers, len(groups))))))
    return out


async def export(job: Job, sel: Selection, out: Path, *, fmt: Format = "jsonl",
                 exclude: frozenset[str] = frozenset(), environ: Mapping[str, str],
                 force: bool = False) -> ExportSummary:
    """Read and write. Raises ReadFailed (the group list could not be read: no file),
    AuthRefused, OutputExists (without `force`). `exclude` holds norm_id forms."""
    kind = job.target.kind
    protected = job.safety.protected
    if sel.to_group is not None and norm_id(sel.to_group) in protected:
        raise InputError(f"the destination {sel.to_group} is in [safety] protected: every row "
                         "would be refused; nothing exported")
    summary = ExportSummary(out)
    async with endpoint_for(job, environ=environ) as endpoint, \
            open_transport(job, endpoint) as t:
        names: dict[str, str | None] = {}
        if sel.groups:
            groups = list(dict.fromkeys(sel.groups))
        else:
            listed = await docspace_groups(t)
            groups = [g for g, _ in listed]
            names = dict(listed)
        counts = [GroupCount(g, names.get(g)) for g in groups]
        to_read: list[int] = []
        for i, (g, c) in enumerate(zip(groups, counts, strict=True)):
            if norm_id(g) in protected:
                c.skipped = "a protected group"
            elif sel.to_group is not None and norm_id(g) == norm_id(sel.to_group):
                c.skipped = "the destination group"
            else:
                to_read.append(i)
        read = await _read_all(t, kind, [groups[i] for i in to_read], sel,
                               job.limits.concurrency)
    written: set[InputRow] = set()
    with InputFileWriter(out, fmt, force=force) as writer:
        for j, i in enumerate(to_read):
            got, c = read[j], counts[i]
            c.name = got.name or c.name
            c.seen = got.seen
            if got.error is not None:
                c.error = got.error
                continue
            for found in got.members:
                keys = {norm_id(x) for x in found.ids}
                if keys & protected:
                    c.protected += 1
                    continue
                if keys & exclude:
                    c.excluded += 1
                    continue
                row = _row(sel, groups[i], found.member)
                if row in written:  # an add of one member found in two groups
                    continue
                written.add(row)
                writer.write(row)
                c.written += 1
                c.by_kind[found.kind or "member"] += 1
    summary.groups = counts
    summary.written = sum(c.written for c in counts)
    return summary


# --- jobs that select their own rows --------------------------------------------------------


def exported_job(job: Job, path: Path) -> Job:
    """The job with its input pointed at exported rows (JSONL, every row names its op)."""
    return replace(job, input=replace(job.input, path=path, format="jsonl", op=None,
                                      select=None))


def _has_results(results: Path) -> bool:
    return results.exists() and results.stat().st_size > 0


async def for_run(job: Job, results: Path, *, resume: bool, environ: Mapping[str, str]
                  ) -> tuple[Job, ExportSummary | None]:
    """The rows of this run: exported now beside `results` for a new run; for a resume, the
    file the first run exported (never a new export: the row numbers are that file's). The
    summary is None when nothing was exported. Raises FileNotFoundError for a resume whose
    export is gone."""
    sel = job.input.select
    assert sel is not None
    path = selection_path(results)
    if resume or _has_results(results):
        # A run that already has results keeps its rows; the runner refuses or resumes.
        if resume and not path.is_file():
            raise FileNotFoundError(str(path))
        return exported_job(job, path), None
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = await export(job, sel, path, environ=environ, force=True)
    return exported_job(job, path), summary


@contextlib.asynccontextmanager
async def to_temp(job: Job, *, environ: Mapping[str, str]
                  ) -> AsyncIterator[tuple[Job, ExportSummary]]:
    """An export into a private temporary folder, removed afterwards."""
    sel = job.input.select
    assert sel is not None
    with tempfile.TemporaryDirectory(prefix="bulkgroups-select-") as folder:
        path = Path(folder) / "selected.jsonl"
        summary = await export(job, sel, path, environ=environ, force=True)
        yield exported_job(job, path), summary

