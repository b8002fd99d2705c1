"""Time and peak RSS of reading a big results file: the resume index, the report scan and the
undo pass, each in a child process of its own so one's memory does not hide another's.

    .venv/bin/python benchmarks/results_read.py [--lines 1000000] [--code DIR] [--repeat 3]

The results file (made once in a temp dir, written by the real `ResultsWriter`) holds
`--lines` outcomes of a DocSpace removal job: 90 % ok, 5 % failed (a few hundred distinct
messages), 3 % noop, 2 % invalid; the last 5 % of the rows are written a second time, as a
resume would. `--code DIR` measures the package found in DIR (e.g. a `git worktree` of an older
commit) instead of this tree: the same file, read by both versions.
Figures: wall and CPU time of the read (the reading modules' imports included), and the
child's peak RSS (ru_maxrss) with what it was before the read. On a shared machine compare
CPU time: wall time moves with everybody else's load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import resource, sys, time
from pathlib import Path
kind, path = sys.argv[1], Path(sys.argv[2])
rows = int(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.process_time()
if kind == "resume":
    from bulkgroups.results.resume import FinishedRows
    try:
        done = FinishedRows.from_results(path, input_rows=rows)
    except TypeError:  # the version before the input's row count was passed
        done = FinishedRows.from_results(path)
    n = done.count
elif kind == "report":
    from bulkgroups.results.report import scan_results
    n = scan_results(path, None).report().rows
elif kind == "undo":
    from bulkgroups.results.undo import write_undo
    n = write_undo(path, path.with_name("undo.csv"), fmt="csv", force=True).total
took, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{took:.3f} {peak} {base} {cpu:.3f} {n}")
"""


def make_file(path: Path, lines: int) -> None:
    sys.path.insert(0, str(ROOT))
    from bulkgroups.model import Outcome, Status
    from bulkgroups.results.file import ResultsWriter

    writer = ResultsWriter(path)
    group = "3f1c2a9e-8b1d-4c5e-9a7f-1b2c3d4e5f60"
    batch: list[Outcome] = []
    resumed = max(1, lines // 20)
    first = lines - resumed
    for i in range(lines):
        row = i + 1 if i < first else first - resumed + (i - first) + 1
        pick = i % 100
        status = (Status.FAILED if pick < 5 else Status.NOOP if pick < 8
                  else Status.INVALID if pick < 10 else Status.OK)
        if i >= first:
            status = Status.OK
        batch.append(Outcome(
            row=row, line=row + 1, key=f"{i:016x}", op="remove", group=group,
            member=f"5e0c7a1b-2d3e-4f50-8a6b-{i % 1_000_000:012d}", to_group="",
            status=status, http_status=None if status is Status.INVALID else 200,
            attempts=0 if status is Status.INVALID else 1 + (pick == 0),
            error=(f"HTTP 500: server error {i % 300}" if status is Status.FAILED
                   else "not a UUID" if status is Status.INVALID else None),
            elapsed_ms=12.5 + pick, finished_at=f"2026-11-23T10:{(i // 60000) % 60:02d}:"
            f"{(i // 1000) % 60:02d}.{i % 1000:03d}Z",
        ))
        if len(batch) == 1000:
            writer.write(batch)
            batch = []
    writer.write(batch)
    writer.close()


def measure(kind: str, path: Path, rows: int, code: Path) -> tuple[float, int, int, float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(rows)], env=env,
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2]), float(out[3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--code", type=Path, default=ROOT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="make (or reuse) the results file here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "r.jsonl"
        if not path.exists():
            make_file(path, args.lines)
        rows = args.lines - max(1, args.lines // 20)
        print(f"code: {args.code}; file: {path.stat().st_size / 1e6:.0f} MB, "
              f"{args.lines:,} lines, {rows:,} rows")
        print("| reader | best wall s | best CPU s | peak RSS MB (before the read) |")
        print("| --- | --- | --- | --- |")
        for kind in ("resume", "report", "undo"):
            runs = [measure(kind, path, rows, args.code) for _ in range(args.repeat)]
            best = min(r[0] for r in runs)
            peak = max(r[1] for r in runs)
            base = min(r[2] for r in runs)
            cpu = min(r[3] for r in runs)
            print(f"| {kind} | {best:.2f} | {cpu:.2f} | {peak / 1024:.0f} ({base / 1024:.0f}) |")


if __name__ == "__main__":
    main()
