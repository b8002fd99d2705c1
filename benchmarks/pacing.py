"""Pacing accuracy: does a job with `rate = R` start at most R requests in any one second, and
how evenly are they spread?

    .venv/bin/python benchmarks/pacing.py [--quick]

For each rate (5, 20, 100 a second) the real CLI (`bulkgroups run --quiet`, batch_size = 1,
precheck = false, concurrency 10) removes R × duration rows, one DELETE each, from a sandbox in
its own process with 20 ms of latency and its rate limits off (so only the client's pacing
shapes the traffic). The request starts come from the sandbox's own log (`GET /_sandbox/log`,
time.monotonic() of the server process):

  busiest 1 s     the most request starts in any one-second window (sliding, to the
                  microsecond), against R: never above R is the promise
  mean gap        mean time between consecutive starts, against 1/R
  p5 / p95 gap    spread of those gaps
  achieved        (starts - 1) / (last start - first start)
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    SandboxProcess,
    bulkgroups_cmd,
    machine_line,
    max_in_window,
    publish,
    removal_rows,
    run_child,
    table,
    verdict,
    write_job,
    write_removals_csv,
    write_state,
)

LATENCY_MS = 20.0
CONCURRENCY = 10


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def measure(rate: float, duration_s: float, work: Path) -> dict[str, Any]:
    rows = max(10, int(rate * duration_s))
    size = 100
    groups = (rows + size - 1) // size
    folder = Path(tempfile.mkdtemp(prefix=f"rate{rate:g}-", dir=work))
    state = folder / "state.json"
    write_state(state, groups, size)
    csv_path = folder / "input.csv"
    pairs = list(removal_rows(groups, size))[:rows]
    write_removals_csv(csv_path, pairs)
    with SandboxProcess(state, "--no-limits", "--latency-ms", str(LATENCY_MS)) as sb:
        job = write_job(folder, base_url=sb.base_url, input_path=csv_path, rate=rate,
                        concurrency=CONCURRENCY, batch_size=1, precheck=False, timeout_s=30)
        child = run_child(bulkgroups_cmd("run", str(job), "--quiet"),
                          timeout_s=duration_s * 3 + 60, cwd=folder)
        log = [e for e in sb.log() if e["api"] == "docspace"]
    starts = sorted(e["start"] for e in log)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    busiest = max_in_window(starts, 1.0)
    return {
        "rate": rate,
        "rows": rows,
        "requests": len(starts),
        "exit": child.code,
        "busiest_1s": busiest,
        "mean_gap_ms": statistics.fmean(gaps) * 1000 if gaps else 0.0,
        "p5_gap_ms": percentile(gaps, 5) * 1000,
        "p95_gap_ms": percentile(gaps, 95) * 1000,
        "min_gap_ms": min(gaps) * 1000 if gaps else 0.0,
        "achieved_rps": (len(starts) - 1) / span if span > 0 else 0.0,
        "max_in_100ms": max_in_window(starts, 0.1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (4 s a rate)")
    ap.add_argument("--duration", type=float, help="seconds of requests per rate [12; quick 4]")
    ap.add_argument("--rates", default="5,20,100")
    args = ap.parse_args()
    duration = args.duration or (4.0 if args.quick else 12.0)
    rates = [float(r) for r in args.rates.split(",")]
    print(machine_line())
    print(f"batch_size 1, precheck false, concurrency {CONCURRENCY}, server latency "
          f"{LATENCY_MS:g} ms, limits off; {duration:g} s of rows per rate")
    figures = []
    with tempfile.TemporaryDirectory(prefix="bg-pacing-") as tmp:
        for rate in rates:
            f = measure(rate, duration, Path(tmp))
            figures.append(f)
            print(f"  rate {rate:g}: busiest 1 s {f['busiest_1s']}, "
                  f"mean gap {f['mean_gap_ms']:.1f} ms", flush=True)
    head = ["rate", "requests", "busiest 1 s", "≤ rate", "mean gap ms", "1/rate ms",
            "p5 gap ms", "p95 gap ms", "min gap ms", "achieved /s", "busiest 100 ms"]
    body = [[f"{f['rate']:g}", f["requests"], f["busiest_1s"],
             verdict(f["busiest_1s"] <= f["rate"]), f["mean_gap_ms"], 1000 / f["rate"],
             f["p5_gap_ms"], f["p95_gap_ms"], f["min_gap_ms"], f["achieved_rps"],
             f["max_in_100ms"]] for f in figures]
    publish("pacing", quick=args.quick, data=figures, parts=[table(head, body)])


if __name__ == "__main__":
    main()
