"""Rows a second, limits off, at 0 ms and 20 ms of server latency.

    .venv/bin/python benchmarks/throughput.py [--quick]

Every variant runs against a fresh sandbox process (`bulkgroups sandbox --no-limits`) seeded
with the same state, and removes the same rows:

  bulkgroups b=1        the real CLI, batch_size = 1, precheck = false (one DELETE a row)
  bulkgroups b=50       the real CLI, batch_size = 50, precheck = false
  bulkgroups b=50+pre   the real CLI, batch_size = 50, precheck = true (one GET a group first)
  raw aiohttp           one ClientSession, a semaphore of `concurrency`, gather: one DELETE a
                        row, body read, status checked, nothing else (the practical ceiling of
                        one-request-per-row Python)
  sequential (vendor)   a plain `for` loop, one DELETE a row, a new connection each time, as the
                        vendors' samples do (`requests` if installed, else `urllib.request`)
  sequential keep-alive the same loop on one aiohttp session, each request awaited in turn

Each of them runs in its own process; `e2e` is the process's wall time from spawn to exit
(start-up, reading the input, the pre-run pass included), `own` is rows a second while rows were
being finished (bulkgroups: first to last `finished_at` of its results file; the baselines:
their timed loop). Every variant runs `--repeats` times, interleaved, and the best `own` run is
kept (the machine is shared). Client CPU is the child's user+sys from wait4().
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    API_KEY,
    PYTHON,
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

CONCURRENCY = 10  # DocSpace refuses a 16th concurrent write
RATE = 10000  # high enough never to bind here


@dataclass
class Figures:
    variant: str
    latency_ms: float
    rows: int
    ok_rows: int
    e2e_s: float
    own_s: float
    client_cpu_s: float
    server_cpu_s: float
    requests: int
    note: str = ""

    @property
    def e2e_rps(self) -> float:
        return self.rows / self.e2e_s if self.e2e_s > 0 else 0.0

    @property
    def own_rps(self) -> float:
        return self.rows / self.own_s if self.own_s > 0 else 0.0

    @property
    def cpu_us_per_row(self) -> float:
        return self.client_cpu_s / self.rows * 1e6 if self.rows else 0.0


# --- baselines, run as `throughput.py --worker KIND ...` in a child process -----------------


def _read_pairs(path: Path, limit: int) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        pairs = [(r["group"], r["member"]) for r in reader]
    return pairs[:limit] if limit else pairs


def _url(base: str, group: str) -> str:
    return f"{base}/api/2.0/group/{group}/members"


async def _raw_aiohttp(base: str, pairs: list[tuple[str, str]], conc: int) -> tuple[float, int]:
    import aiohttp

    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    ok = 0
    sem = asyncio.Semaphore(conc)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:

        async def one(group: str, member: str) -> None:
            nonlocal ok
            body = orjson.dumps({"members": [member]})
            async with sem, session.delete(_url(base, group), data=body, headers=headers) as r:
                await r.read()
                ok += r.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(one(g, m) for g, m in pairs))
        return time.perf_counter() - started, ok


async def _seq_keepalive(base: str, pairs: list[tuple[str, str]], max_s: float
                         ) -> tuple[float, int, int]:
    import aiohttp

    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    ok = done = 0
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for group, member in pairs:
            body = orjson.dumps({"members": [member]})
            async with session.delete(_url(base, group), data=body, headers=headers) as r:
                await r.read()
                ok += r.status == 200
            done += 1
            if time.perf_counter() - started > max_s:
                break
        return time.perf_counter() - started, ok, done


def _seq_vendor(base: str, pairs: list[tuple[str, str]], max_s: float
                ) -> tuple[float, int, int, str]:
    """The vendors' sample loop: one call per row, no session (a new connection each time)."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    ok = done = 0
    try:
        import requests  # type: ignore[import-untyped]
    except ImportError:
        requests = None
    started = time.perf_counter()
    if requests is not None:
        how = "requests.delete per row"
        for group, member in pairs:
            r = requests.delete(_url(base, group), json={"members": [member]}, headers=headers,
                                timeout=30)
            ok += r.status_code == 200
            done += 1
            if time.perf_counter() - started > max_s:
                break
    else:
        import urllib.request

        how = "urllib.request.urlopen per row (requests not installed), Connection: close"
        for group, member in pairs:
            req = urllib.request.Request(
                _url(base, group), data=orjson.dumps({"members": [member]}), method="DELETE",
                headers={**headers, "Connection": "close"},
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
                ok += resp.status == 200
            done += 1
            if time.perf_counter() - started > max_s:
                break
    return time.perf_counter() - started, ok, done, how


def worker_main(args: argparse.Namespace) -> None:
    pairs = _read_pairs(Path(args.input), args.limit)
    out: dict[str, Any]
    if args.worker == "raw":
        loop_s, ok = asyncio.run(_raw_aiohttp(args.url, pairs, args.concurrency))
        out = {"rows": len(pairs), "ok": ok, "loop_s": loop_s}
    elif args.worker == "seq-keepalive":
        loop_s, ok, done = asyncio.run(_seq_keepalive(args.url, pairs, args.max_s))
        out = {"rows": done, "ok": ok, "loop_s": loop_s}
    else:
        loop_s, ok, done, how = _seq_vendor(args.url, pairs, args.max_s)
        out = {"rows": done, "ok": ok, "loop_s": loop_s, "how": how}
    Path(args.report).write_bytes(orjson.dumps(out))


# --- the driver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "bulkgroups" | "raw" | "seq-vendor" | "seq-keepalive"
    batch_size: int = 1
    precheck: bool = False


VARIANTS = (
    Variant("bulkgroups b=1", "bulkgroups", 1, False),
    Variant("bulkgroups b=50", "bulkgroups", 50, False),
    Variant("bulkgroups b=50+pre", "bulkgroups", 50, True),
    Variant("raw aiohttp", "raw"),
    Variant("sequential (vendor)", "seq-vendor"),
    Variant("sequential keep-alive", "seq-keepalive"),
)


def measure(v: Variant, latency: float, work: Path, state: Path, csv_path: Path, rows: int,
            seq_rows: int, n: int, timeout_s: float) -> Figures:
    """One run of one variant against a fresh sandbox."""
    args = ["--no-limits", "--latency-ms", str(latency)]
    run_dir = Path(tempfile.mkdtemp(prefix=f"{v.kind}-", dir=work))
    with SandboxProcess(state, *args) as sb:
        cpu0 = sb.cpu_s()
        note = ""
        if v.kind == "bulkgroups":
            job = write_job(run_dir, base_url=sb.base_url, input_path=csv_path, name=f"run{n}",
                            rate=RATE, concurrency=CONCURRENCY, batch_size=v.batch_size,
                            precheck=v.precheck, timeout_s=30)
            child = run_child(bulkgroups_cmd("run", str(job), "--quiet"), timeout_s=timeout_s,
                              cwd=run_dir)
            res = summarize_results(run_dir / "results.jsonl")
            done, ok = res.rows, res.by_status.get("ok", 0)
            # span between first and last finished row covers done-1 rows
            own_s = res.span_s * done / max(done - 1, 1)
            if child.code != 0:
                note = f"exit {child.code}: {child.stderr.strip()[-200:]}"
        else:
            report = run_dir / "report.json"
            limit = rows if v.kind == "raw" else seq_rows
            cmd = [PYTHON, __file__, "--worker", v.kind, "--url", sb.base_url, "--input",
                   str(csv_path), "--limit", str(limit), "--concurrency", str(CONCURRENCY),
                   "--max-s", str(timeout_s / 2), "--report", str(report)]
            child = run_child(cmd, timeout_s=timeout_s)
            if child.code != 0:
                raise RuntimeError(f"{v.name} failed: {child.stderr}")
            out = orjson.loads(report.read_bytes())
            done, ok, own_s = out["rows"], out["ok"], out["loop_s"]
            note = out.get("how", "")
        server_cpu = sb.cpu_s() - cpu0
        requests = len(sb.log())
    return Figures(v.name, latency, done, ok, child.wall_s, own_s, child.cpu_s, server_cpu,
                   requests, note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rows, one repeat")
    ap.add_argument("--rows", type=int, help="rows removed per variant [20000; quick 4000]")
    ap.add_argument("--group-size", type=int, default=100,
                    help="members per group; rows remove every member of rows/size groups")
    ap.add_argument("--repeats", type=int, help="runs per variant, best kept [2; quick 1]")
    ap.add_argument("--latencies", default="0,20", help="server latencies in ms")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY, help=argparse.SUPPRESS)
    ap.add_argument("--max-s", type=float, default=60.0, help=argparse.SUPPRESS)
    ap.add_argument("--report", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args)
        return

    rows = args.rows or (4000 if args.quick else 20000)
    repeats = args.repeats or (1 if args.quick else 2)
    size = args.group_size
    groups = max(1, rows // size)
    rows = groups * size
    latencies = [float(x) for x in args.latencies.split(",")]
    timeout_s = 120.0 if args.quick else 300.0
    print(machine_line())
    print(f"{rows:,} removals over {groups} groups of {size} members (every member removed); "
          f"concurrency {CONCURRENCY}, rate {RATE}, sandbox --no-limits; best of {repeats}")

    all_figs: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="bg-throughput-") as tmp:
        work = Path(tmp)
        state, csv_path = write_removals(work, groups, size)
        n = 0
        for latency in latencies:
            # the sequential loops are slow: fewer rows, rows/s extrapolated
            seq_rows = min(rows, (1000 if args.quick else 3000) if latency == 0 else
                           (100 if args.quick else 300))
            for rep in range(repeats):
                order = VARIANTS if rep % 2 == 0 else tuple(reversed(VARIANTS))
                for v in order:
                    if v.kind.startswith("seq") and rep > 0 and latency > 0:
                        continue  # a 20 ms sequential loop is bound by the latency, not noise
                    n += 1
                    fig = measure(v, latency, work, state, csv_path, rows, seq_rows, n,
                                  timeout_s)
                    all_figs.append(fig)
                    print(f"  {latency:>4g} ms  {fig.variant:<22} {fig.own_rps:>9,.0f} rows/s own"
                          f"  {fig.e2e_rps:>9,.0f} e2e  ({fig.rows:,} rows, {fig.ok_rows:,} ok,"
                          f" {fig.requests:,} requests)", flush=True)

    best: dict[tuple[float, str], Figures] = {}
    for f in all_figs:
        key = (f.latency_ms, f.variant)
        if key not in best or f.own_rps > best[key].own_rps:
            best[key] = f

    head = ["latency", "variant", "rows", "rows/s own", "rows/s e2e", "client CPU µs/row",
            "server CPU s", "requests", "all ok"]
    body = []
    for latency in latencies:
        for v in VARIANTS:
            f = best[(latency, v.name)]
            body.append([f"{latency:g} ms", f.variant, f.rows, f.own_rps, f.e2e_rps,
                         f.cpu_us_per_row, f.server_cpu_s, f.requests,
                         "yes" if f.ok_rows == f.rows else f"{f.ok_rows}/{f.rows}"])
    text = [table(head, body)]

    def rps(latency: float, name: str, own: bool = True) -> float:
        f = best[(latency, name)]
        return f.own_rps if own else f.e2e_rps

    checks = []
    for latency in latencies:
        raw = rps(latency, "raw aiohttp")
        b1 = rps(latency, "bulkgroups b=1")
        # Client CPU a row does not depend on what else the shared machine runs: raw's over
        # bulkgroups' is the rows/s ratio the two would have if the client's core were the
        # only bound.
        cpu = (best[(latency, "raw aiohttp")].cpu_us_per_row
               / best[(latency, "bulkgroups b=1")].cpu_us_per_row)
        checks.append([f"without batching ≥ 0.8× raw aiohttp ({latency:g} ms)",
                       f"{b1 / raw:.2f}× (e2e {rps(latency, 'bulkgroups b=1', False) / raw:.2f}×;"
                       f" client CPU a row: {cpu:.2f}×)",
                       verdict(b1 >= 0.8 * raw)])
    if 0.0 in latencies:
        raw = rps(0.0, "raw aiohttp")
        b50 = rps(0.0, "bulkgroups b=50")
        pre = rps(0.0, "bulkgroups b=50+pre")
        b50e = rps(0.0, "bulkgroups b=50", False)
        checks.append(["with batching (0 ms) > raw aiohttp",
                       f"{b50 / raw:.2f}× (precheck: {pre / raw:.2f}×; e2e {b50e / raw:.2f}×)",
                       verdict(b50 > raw)])
    if 20.0 in latencies:
        seq = rps(20.0, "sequential (vendor)")
        b50 = rps(20.0, "bulkgroups b=50")
        b50e = rps(20.0, "bulkgroups b=50", False)
        pre = rps(20.0, "bulkgroups b=50+pre")
        checks.append(["≥ 30× the sequential loop (20 ms)",
                       f"{b50 / seq:.0f}× (e2e {b50e / seq:.0f}×, precheck {pre / seq:.0f}×)",
                       verdict(b50e >= 30 * seq)])
    text += [checks_table(checks)]
    vendor_note = best[(latencies[0], "sequential (vendor)")].note
    text += [f"sequential (vendor) is: {vendor_note}"]
    raw = [asdict(f) | {"own_rps": f.own_rps, "e2e_rps": f.e2e_rps} for f in all_figs]
    publish("throughput", quick=args.quick, data=raw, parts=text)


if __name__ == "__main__":
    main()
