"""Batches that fill whatever the input's order (issue 13): rows per request and rows/s.

    .venv/bin/python benchmarks/batching.py [--quick] [--no-memory]

Part 1, under DocSpace's default limits (the sandbox's: 1500 requests a 60 s window, 15
concurrent writes), 20 ms latency, job rate 24, concurrency 10, batch_size 100: removals
sorted by group and the same rows shuffled, over 30, 1,000 and 10,000 groups. Each variant is
the real CLI against a fresh sandbox, run to the end or stopped with SIGTERM after `--box`
seconds (figures cover what finished by then):

  rows/request  rows finished / member requests (DELETEs) the sandbox saw
  rows/s        rows finished, first to last finished_at
  429s          answers 429 in the sandbox's log
  busiest 1 s / 60 s, most in flight   from the sandbox's log (start/end of each request)
  peak RSS      the CLI's own VmHWM

Beside them: the per-row ceiling (batch_size 1 at rate 24: one request a row) and, with the
limits off and 20 ms latency, batch_size 1 against the raw aiohttp loop of throughput.py.

Part 2 (skip with --no-memory), limits off, 0 ms, rate 10000, batch_size 100: peak RSS of a
shuffled run at 100,000 and 1,000,000 rows over 1,000 groups (flat as the input grows?).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    SandboxProcess,
    bulkgroups_cmd,
    checks_table,
    machine_line,
    max_in_window,
    max_overlap,
    publish,
    run_child,
    summarize_results,
    table,
    verdict,
    write_job,
    write_removals,
)

RATE = 24
CONCURRENCY = 10
BATCH = 100
LATENCY_MS = 20.0
HERE = Path(__file__).resolve().parent


def bulkgroups_run(name: str, state: Path, csv_path: Path, work: Path, *, sandbox_args: list[str],
                   rate: float, batch: int, box_s: float | None, timeout_s: float
                   ) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="batch-", dir=work))
    with SandboxProcess(state, *sandbox_args) as sb:
        job = write_job(folder, base_url=sb.base_url, input_path=csv_path, rate=rate,
                        concurrency=CONCURRENCY, batch_size=batch, precheck=False,
                        timeout_s=30)
        child = run_child(bulkgroups_cmd("run", str(job), "--quiet"), stop_after_s=box_s,
                          timeout_s=timeout_s, grace_s=40, cwd=folder)
        log = [e for e in sb.log() if e["api"] == "docspace"]
    res = summarize_results(folder / "results.jsonl", until=child.stopped_at)
    end = child.stopped_mono if child.stopped_mono is not None else float("inf")
    boxed = [e for e in log if e["start"] <= end]
    writes = [e for e in boxed if e["method"] == "DELETE"]
    starts = [e["start"] for e in boxed]
    return {
        "variant": name, "rows": res.rows, "ok": res.by_status.get("ok", 0),
        "requests": len(writes),
        "rows_per_request": res.rows / len(writes) if writes else 0.0,
        "rows_per_s": res.rows_per_s,
        "r429": sum(e["status"] == 429 for e in log),
        "busiest_1s": max_in_window(starts, 1.0), "busiest_60s": max_in_window(starts, 60.0),
        "max_in_flight": max_overlap((e["start"], e["end"]) for e in boxed),
        "peak_rss_mb": child.maxrss_mb, "wall_s": child.wall_s, "exit": child.code,
        "boxed": child.stopped_at is not None,
    }


def raw_loop(state: Path, csv_path: Path, work: Path, rows: int) -> dict[str, Any]:
    report = work / "raw.json"
    with SandboxProcess(state, "--no-limits", "--latency-ms", str(LATENCY_MS)) as sb:
        cmd = [PYTHON, str(HERE / "throughput.py"), "--worker", "raw", "--url", sb.base_url,
               "--input", str(csv_path), "--limit", str(rows), "--concurrency",
               str(CONCURRENCY), "--max-s", "120", "--report", str(report)]
        child = run_child(cmd, timeout_s=240)
    if child.code != 0:
        raise RuntimeError(f"raw loop failed: {child.stderr}")
    out = orjson.loads(report.read_bytes())
    return {"variant": "raw aiohttp loop (limits off)", "rows": out["rows"],
            "requests": out["rows"], "rows_per_request": 1.0,
            "rows_per_s": out["rows"] / out["loop_s"], "peak_rss_mb": child.maxrss_mb}


def per_row(args: argparse.Namespace, work: Path, box: float, limited: list[str]
            ) -> list[dict[str, Any]]:
    """The per-row ceiling (batch_size 1 at rate 24), and batch_size 1 against the raw loop."""
    out: list[dict[str, Any]] = []
    state, csv_path = write_removals(work, 30, 1000 if not args.quick else 300, shuffled=True)
    f = bulkgroups_run("per-row ceiling: batch_size 1", state, csv_path, work,
                       sandbox_args=limited, rate=RATE, batch=1, box_s=box / 2, timeout_s=600)
    f.update(part="limits")
    out.append(f)
    print(f"  per-row ceiling {f['rows_per_s']:.1f} rows/s", flush=True)
    state, csv_path = write_removals(work, 30, 100 if args.quick else 200, shuffled=True)
    f = bulkgroups_run("batch_size 1 (limits off)", state, csv_path, work,
                       sandbox_args=["--no-limits", *limited], rate=10000, batch=1,
                       box_s=None, timeout_s=600)
    f.update(part="raw")
    raw = raw_loop(state, csv_path, work, f["rows"])
    raw.update(part="raw")
    out += [f, raw]
    print(f"  b=1 {f['rows_per_s']:.0f} rows/s vs raw {raw['rows_per_s']:.0f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs, shorter boxes")
    ap.add_argument("--box", type=float, help="seconds a time-boxed variant runs [30; quick 12]")
    ap.add_argument("--no-memory", action="store_true", help="skip part 2 (1M rows)")
    ap.add_argument("--memory-only", action="store_true", help="part 2 alone")
    args = ap.parse_args()
    box = args.box or (12.0 if args.quick else 30.0)
    limited = ["--latency-ms", str(LATENCY_MS)]  # the sandbox's default limits stay on
    print(machine_line())
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bg-batching-") as tmp:
        work = Path(tmp)
        # (groups, rows a group): 30,000 rows over 30 groups run to the end; the others are
        # time-boxed (a group's rows cap a sorted batch: 100 and 30 a group).
        shapes = [(30, 1000, None), (1000, 100, box), (10_000, 30, box)]
        if args.quick:
            shapes = [(30, 300, None), (1000, 30, box), (10_000, 5, box)]
        if args.memory_only:
            shapes = []
        for groups, per, box_s in shapes:
            for shuffled in (False, True):
                state, csv_path = write_removals(work, groups, per, shuffled=shuffled)
                name = f"{groups:,} groups, {'shuffled' if shuffled else 'sorted'}"
                f = bulkgroups_run(name, state, csv_path, work, sandbox_args=limited, rate=RATE,
                                   batch=BATCH, box_s=box_s, timeout_s=600)
                f.update(groups=groups, shuffled=shuffled, part="limits")
                figures.append(f)
                print(f"  {name:<28} {f['rows_per_request']:6.1f} rows/request "
                      f"{f['rows_per_s']:8,.0f} rows/s  429s {f['r429']}  "
                      f"RSS {f['peak_rss_mb']:.0f} MB", flush=True)
        for f in [] if args.memory_only else per_row(args, work, box, limited):
            figures.append(f)
        if not args.no_memory:
            sizes = (20_000, 200_000) if args.quick else (100_000, 1_000_000)
            for rows in sizes:
                state, csv_path = write_removals(work, 1000, rows // 1000, shuffled=True)
                f = bulkgroups_run(f"{rows:,} rows shuffled, limits off", state, csv_path,
                                   work, sandbox_args=["--no-limits"], rate=10000, batch=BATCH,
                                   box_s=None, timeout_s=900)
                f.update(part="memory")
                figures.append(f)
                print(f"  {rows:,} rows: {f['rows_per_s']:,.0f} rows/s, RSS "
                      f"{f['peak_rss_mb']:.0f} MB, {f['rows_per_request']:.1f} rows/request",
                      flush=True)

    head = ["variant", "rows", "requests", "rows/request", "rows/s", "429s", "busiest 1 s",
            "busiest 60 s", "most in flight", "peak RSS MB", "exit"]

    def line(f: dict[str, Any]) -> list[Any]:
        return [f["variant"], f["rows"], f["requests"], f["rows_per_request"], f["rows_per_s"],
                f.get("r429", ""), f.get("busiest_1s", ""), f.get("busiest_60s", ""),
                f.get("max_in_flight", ""), f["peak_rss_mb"], f.get("exit", "")]

    by = {f["variant"]: f for f in figures}
    thirty = [f for f in figures if f.get("groups") == 30]
    checks: list[list[str]] = []
    if thirty:
        worst30 = min(f["rows_per_s"] for f in thirty)
        limits = [f for f in figures if f["part"] == "limits"]
        checks += [
            ["30 groups, sorted or shuffled, ≥ 1,667 rows/s", f"{worst30:,.0f}",
             verdict(worst30 >= 1667)],
            ["no 429 at DocSpace's default limits", str(sum(f["r429"] for f in limits)),
             verdict(all(f["r429"] == 0 for f in limits))],
        ]
    if "batch_size 1 (limits off)" in by:
        b1, rawf = by["batch_size 1 (limits off)"], by["raw aiohttp loop (limits off)"]
        checks.append(["batch_size 1 ≥ 0.8× raw aiohttp loop",
                       f"{b1['rows_per_s'] / rawf['rows_per_s']:.2f}×",
                       verdict(b1["rows_per_s"] >= 0.8 * rawf["rows_per_s"])])
    mem = [f for f in figures if f["part"] == "memory"]
    if mem:
        peak = f"{mem[-1]['peak_rss_mb']:.0f} MB"
        checks.append(["peak RSS ≤ 150 MB, largest shuffled run", peak,
                       verdict(mem[-1]["peak_rss_mb"] <= 150)])
    publish("batching", quick=args.quick, data=figures,
            parts=[table(head, [line(f) for f in figures]), checks_table(checks)])


if __name__ == "__main__":
    main()
