"""CPU time a row and peak memory of `bulkgroups validate` and `bulkgroups run`, at 100,000 and
1,000,000 rows: memory must not grow with the input.

    .venv/bin/python benchmarks/memory.py [--quick]

Inputs are CSV files of removals made in a temp dir; the sandbox (its own process, limits off,
no latency) is seeded with matching groups of 1,000 members each, and every row removes a real
member. Each command is the real CLI in a child process; its user+sys CPU time and peak RSS
(ru_maxrss) come from wait4() for that child alone. `bulkgroups --version` is measured too: the
floor that the interpreter and the imports cost before any row.

Groups are 1,000 members rather than a few huge groups on purpose: a DocSpace DELETE answers
with the group and all its remaining members, so with 250,000-member groups every batched
request would return megabytes and the run would measure the sandbox's JSON, not bulkgroups
(see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    API_KEY,
    TOKEN_ENV,
    SandboxProcess,
    bulkgroups_cmd,
    checks_table,
    machine_line,
    publish,
    run_child,
    summarize_results,
    table,
    verdict,
    write_job,
    write_removals,
)

GROUP_SIZE = 1000
MEMORY_TARGET_MB = 150.0
VALIDATE_TARGET_S = 15.0


def row_figures(what: str, rows: int, child: Any, own_rps: float | None = None,
                note: str = "") -> dict[str, Any]:
    return {
        "command": what,
        "rows": rows,
        "exit": child.code,
        "timed_out": child.timed_out,
        "wall_s": child.wall_s,
        "cpu_s": child.cpu_s,
        "cpu_us_per_row": child.cpu_s / rows * 1e6 if rows else 0.0,
        "peak_rss_mb": child.maxrss_mb,
        "rows_per_s_e2e": rows / child.wall_s if child.wall_s else 0.0,
        "rows_per_s_own": own_rps,
        "note": note,
    }


def measure_size(rows: int, work: Path, timeout_s: float, precheck_too: bool
                 ) -> list[dict[str, Any]]:
    groups = rows // GROUP_SIZE
    folder = Path(tempfile.mkdtemp(prefix=f"n{rows}-", dir=work))
    t0 = time.perf_counter()
    state, csv_path = write_removals(folder, groups, GROUP_SIZE)
    print(f"  {rows:,} rows: input {csv_path.stat().st_size / 1e6:.0f} MB, state "
          f"{state.stat().st_size / 1e6:.0f} MB, made in {time.perf_counter() - t0:.1f} s",
          flush=True)
    out = []
    # validate is offline: the base_url is never contacted
    job = write_job(folder, base_url="http://127.0.0.1:9", input_path=csv_path, name="validate",
                    batch_size=50)
    child = run_child(bulkgroups_cmd("validate", str(job)), timeout_s=timeout_s, cwd=folder)
    note = ""
    if Path("/usr/bin/time").exists():
        # A second opinion on the peak: GNU time forks from itself (a small image), so its
        # ru_maxrss is bulkgroups' own.
        gnu = folder / "time.txt"
        run_child(["/usr/bin/time", "-f", "%M", "-o", str(gnu),
                   *bulkgroups_cmd("validate", str(job))], timeout_s=timeout_s, cwd=folder)
        with contextlib.suppress(ValueError, OSError):
            note = f"GNU time: max RSS {int(gnu.read_text().split()[-1]) / 1024:.0f} MB"
    out.append(row_figures("validate", rows, child, note=note))
    print(f"    validate: {child.wall_s:.1f} s, {child.maxrss_mb:.0f} MB {note}", flush=True)

    variants = [("run b=50", False)] + ([("run b=50+pre", True)] if precheck_too else [])
    for name, precheck in variants:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
        with SandboxProcess(state, "--no-limits") as sb:
            job = write_job(run_dir, base_url=sb.base_url, input_path=csv_path, name="run",
                            rate=10000, concurrency=10, batch_size=50, precheck=precheck,
                            timeout_s=60)
            cpu0 = sb.cpu_s()
            child = run_child(bulkgroups_cmd("run", str(job), "--quiet"), timeout_s=timeout_s,
                              cwd=run_dir)
            server_cpu = sb.cpu_s() - cpu0
            server_rss = sb.peak_rss_mb()
        res = summarize_results(run_dir / "results.jsonl")
        note = f"{res.by_status}; sandbox CPU {server_cpu:.0f} s, RSS {server_rss:.0f} MB"
        if child.timed_out:
            note += f"; stopped at the {timeout_s:.0f} s bound"
        f = row_figures(name, res.rows, child, res.rows_per_s, note)
        f["rows_asked"] = rows
        out.append(f)
        print(f"    {name}: {child.wall_s:.1f} s, {child.maxrss_mb:.0f} MB, {res.rows:,} rows "
              f"({note})", flush=True)
        (run_dir / "results.jsonl").unlink(missing_ok=True)
    return out


def trace_precheck(rows: int) -> None:
    """Where a precheck run's memory goes: the same run in this process under tracemalloc, a
    snapshot kept at the highest traced size (sampled every 0.5 s from a thread)."""
    import asyncio
    import os
    import threading
    import tracemalloc

    from bulkgroups.job import load_job
    from bulkgroups.runner import RunRequest, run_job

    groups = rows // GROUP_SIZE
    with tempfile.TemporaryDirectory(prefix="bg-trace-") as tmp:
        folder = Path(tmp)
        state, csv_path = write_removals(folder, groups, GROUP_SIZE)
        with SandboxProcess(state, "--no-limits") as sb:
            job_path = write_job(folder, base_url=sb.base_url, input_path=csv_path, name="run",
                                 rate=10000, concurrency=10, batch_size=50, precheck=True)
            job = load_job(job_path)
            best: list[Any] = [0, None]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.5):
                    current, _ = tracemalloc.get_traced_memory()
                    if current > best[0]:
                        best[0], best[1] = current, tracemalloc.take_snapshot()

            tracemalloc.start(1)
            thread = threading.Thread(target=sample, daemon=True)
            thread.start()
            req = RunRequest(results=folder / "results.jsonl", quiet=True, yes=True)
            asyncio.run(run_job(job, req, environ={**os.environ, TOKEN_ENV: API_KEY}))
            done.set()
            thread.join()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    print(f"precheck run of {rows:,} rows ({groups} groups of {GROUP_SIZE}): traced peak "
          f"{peak / 1e6:.0f} MB; largest snapshot {best[0] / 1e6:.0f} MB, top lines:")
    if best[1] is not None:
        for stat in best[1].statistics("lineno")[:8]:
            frame = stat.traceback[0]
            where = frame.filename.split("site-packages/")[-1].split("/work/main/")[-1]
            print(f"  {stat.size / 1e6:7.1f} MB {stat.count:>9,} blocks  {where}:{frame.lineno}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20,000 and 200,000 rows")
    ap.add_argument("--sizes", help="comma-separated row counts [100000,1000000]")
    ap.add_argument("--timeout", type=float, default=900.0, help="bound on each command, s")
    ap.add_argument("--no-precheck-run", action="store_true",
                    help="skip the precheck = true runs")
    ap.add_argument("--trace-precheck", type=int, metavar="ROWS",
                    help="instead: show where a precheck run's memory goes (tracemalloc)")
    args = ap.parse_args()
    if args.trace_precheck:
        trace_precheck(args.trace_precheck)
        return
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else [20_000, 200_000] if args.quick else [100_000, 1_000_000])
    print(machine_line())
    print(f"groups of {GROUP_SIZE} members; runs: concurrency 10, rate 10000, batch_size 50, "
          "sandbox --no-limits")
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bg-memory-") as tmp:
        floor = run_child(bulkgroups_cmd("--version"), timeout_s=60)
        figures.append(row_figures("--version (floor)", 0, floor))
        for n in sizes:
            figures += measure_size(n, Path(tmp), args.timeout, not args.no_precheck_run)
    head = ["command", "rows", "wall s", "rows/s e2e", "rows/s own", "CPU s", "CPU µs/row",
            "peak RSS MB", "exit"]
    body = [[f["command"], f["rows"], f["wall_s"], f["rows_per_s_e2e"] if f["rows"] else "",
             f["rows_per_s_own"] if f["rows_per_s_own"] is not None else "", f["cpu_s"],
             f["cpu_us_per_row"] if f["rows"] else "", f["peak_rss_mb"], f["exit"]]
            for f in figures]
    notes = [f"- {f['command']} {f['rows']:,}: {f['note']}" for f in figures if f["note"]]

    def find(cmd: str, rows: int) -> dict[str, Any] | None:
        return next((f for f in figures if f["command"] == cmd
                     and f.get("rows_asked", f["rows"]) == rows), None)

    big, small = max(sizes), min(sizes)
    checks = []
    for cmd in ("validate", "run b=50", "run b=50+pre"):
        f = find(cmd, big)
        if f is None:
            continue
        s = find(cmd, small)
        grow = (f" ({f['peak_rss_mb'] - s['peak_rss_mb']:+.0f} MB from {small:,} rows)"
                if s else "")
        checks.append([f"peak memory ≤ {MEMORY_TARGET_MB:.0f} MB: {cmd}, {big:,} rows",
                       f"{f['peak_rss_mb']:.0f} MB{grow}",
                       verdict(f["peak_rss_mb"] <= MEMORY_TARGET_MB)])
    v = find("validate", big)
    if v is not None:
        checks.append([f"validate {big:,} rows < {VALIDATE_TARGET_S:.0f} s",
                       f"{v['wall_s']:.1f} s", verdict(v["wall_s"] < VALIDATE_TARGET_S)])
    publish("memory", quick=args.quick, data=figures,
            parts=[table(head, body), *(["\n".join(notes)] if notes else []),
                   checks_table(checks)])


if __name__ == "__main__":
    main()
