"""Rows a second under DocSpace's default rate limits: batching against one request per row.

    .venv/bin/python benchmarks/server_limit.py [--quick]

The sandbox runs in its own process with its default limits (a sliding window of 1500 requests
a minute, i.e. 25 a second; 15 concurrent writes; 10,000 POST/PUT a day, which DELETE does not
spend) and 20 ms of latency. The job asks for rate 100, above the limit, so the client's
adaptive pacing has to find the server's pace from its answers (X-RateLimit-* headers, 429s).

Each variant is the real CLI (`bulkgroups run --quiet`, concurrency 10) against a fresh sandbox,
stopped with SIGTERM after `--duration` seconds (bulkgroups then finishes the requests in
flight): a fixed time box, the way a nightly window would be. Figures cover the time box only:

  rows/s       rows finished by the stop, over first to last finished_at
  requests/s   requests the sandbox saw start, from the first one to the stop
  429s         answers 429 in the sandbox's log (`GET /_sandbox/log`)
  busiest 60 s the most request starts in any 60 s window, against the 1500 allowed
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    SandboxProcess,
    bulkgroups_cmd,
    checks_table,
    machine_line,
    max_in_window,
    publish,
    run_child,
    summarize_results,
    table,
    verdict,
    write_job,
    write_removals,
)

WINDOW_LIMIT = 1500  # the sandbox default, as DocSpace's
LIMIT_RPS = WINDOW_LIMIT / 60
JOB_RATE = 100
CONCURRENCY = 10
GROUP_SIZE = 500

VARIANTS = (
    ("bulkgroups b=50", 50, False),
    ("bulkgroups b=50+pre", 50, True),
    ("bulkgroups b=1", 1, False),
)


def measure(name: str, batch: int, precheck: bool, duration: float, latency: float,
            state: Path, csv_path: Path, work: Path) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="limit-", dir=work))
    with SandboxProcess(state, "--latency-ms", str(latency)) as sb:
        job = write_job(folder, base_url=sb.base_url, input_path=csv_path, rate=JOB_RATE,
                        concurrency=CONCURRENCY, batch_size=batch, precheck=precheck,
                        timeout_s=30)
        # SIGKILL only if in-flight requests (which may sit out a Retry-After of up to 60 s)
        # are not done 70 s after the SIGTERM.
        child = run_child(bulkgroups_cmd("run", str(job), "--quiet"),
                          stop_after_s=duration, timeout_s=duration + 60, grace_s=70,
                          cwd=folder)
        log = sb.log()
    stop_mono = child.stopped_mono
    res = summarize_results(folder / "results.jsonl", until=child.stopped_at)
    data = [e for e in log if e["api"] == "docspace"]
    first = min(e["start"] for e in data)
    end = stop_mono if stop_mono is not None else max(e["start"] for e in data)
    boxed = [e for e in data if e["start"] <= end]
    starts = [e["start"] for e in boxed]
    return {
        "variant": name,
        "batch_size": batch,
        "precheck": precheck,
        "duration_s": end - first,
        "rows": res.rows,
        "ok": res.by_status.get("ok", 0),
        "failed": res.by_status.get("failed", 0),
        "rows_per_s": res.rows_per_s,
        "requests": len(boxed),
        "requests_per_s": len(boxed) / (end - first) if end > first else 0.0,
        "gets": sum(e["method"] == "GET" for e in boxed),
        "r429": sum(e["status"] == 429 for e in data),
        "busiest_60s": max_in_window(starts, 60.0),
        "busiest_1s": max_in_window(starts, 1.0),
        "max_writes_in_flight": max((e["writes_in_flight"] for e in data), default=0),
        "exit": child.code,
        "stopped_by_deadline": child.stopped_at is not None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 s a variant instead of 75 s")
    ap.add_argument("--duration", type=float, help="seconds a variant [75; quick 20]")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()
    duration = args.duration or (20.0 if args.quick else 75.0)
    # Enough rows that even the batched run is still going when the time box closes.
    rows = int(LIMIT_RPS * 50 * duration * 1.3)
    groups = rows // GROUP_SIZE + 1
    print(machine_line())
    print(f"sandbox default limits ({WINDOW_LIMIT}/min, 15 concurrent writes), latency "
          f"{args.latency_ms:g} ms; job rate {JOB_RATE}, concurrency {CONCURRENCY}; "
          f"{duration:g} s a variant; input {groups * GROUP_SIZE:,} removals "
          f"({groups} groups of {GROUP_SIZE})")
    figures = []
    with tempfile.TemporaryDirectory(prefix="bg-limit-") as tmp:
        work = Path(tmp)
        state, csv_path = write_removals(work, groups, GROUP_SIZE)
        for name, batch, precheck in VARIANTS:
            f = measure(name, batch, precheck, duration, args.latency_ms, state, csv_path, work)
            figures.append(f)
            print(f"  {name:<20} {f['rows_per_s']:>8,.1f} rows/s, {f['requests_per_s']:.1f} "
                  f"requests/s, {f['r429']} × 429", flush=True)
    head = ["variant", "s", "rows", "rows/s", "requests/s", "of 25/s", "429s", "GETs",
            "busiest 60 s", "busiest 1 s", "max writes in flight"]
    body = [[f["variant"], f["duration_s"], f["rows"], f["rows_per_s"], f["requests_per_s"],
             f"{f['requests_per_s'] / LIMIT_RPS:.0%}", f["r429"], f["gets"], f["busiest_60s"],
             f["busiest_1s"], f["max_writes_in_flight"]] for f in figures]
    by = {f["variant"]: f for f in figures}
    b50, b1 = by["bulkgroups b=50"], by["bulkgroups b=1"]
    pre = by["bulkgroups b=50+pre"]
    ratio = b50["rows_per_s"] / b1["rows_per_s"] if b1["rows_per_s"] else float("inf")
    ratio_pre = pre["rows_per_s"] / b1["rows_per_s"] if b1["rows_per_s"] else float("inf")
    checks = [
        ["batching ≥ 20× one-request-per-row", f"{ratio:.1f}× (precheck {ratio_pre:.1f}×)",
         verdict(ratio >= 20)],
        ["zero 429s with batching", f"{b50['r429']} (precheck {pre['r429']})",
         verdict(b50["r429"] == 0)],
        ["one-request-per-row: 429s", str(b1["r429"]), "(no target)"],
    ]
    publish("server_limit", quick=args.quick, data=figures,
            parts=[table(head, body), checks_table(checks)])


if __name__ == "__main__":
    main()
