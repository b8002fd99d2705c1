"""Where a `bulkgroups run` spends its CPU: the real CLI under py-spy (or cProfile when py-spy
is not installed), against a sandbox in its own process with limits off.

    .venv/bin/pip install py-spy     # optional, into the venv only; not a project dependency
    .venv/bin/python benchmarks/profile_run.py --rows 20000 --batch-size 1
    .venv/bin/python benchmarks/profile_run.py --rows 200000 --batch-size 50 [--precheck]

Prints the functions with the most samples: by self time (the line that was running) and
inclusive (anywhere on the stack), as a share of all samples of the process.
"""

from __future__ import annotations

import argparse
import collections
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    ROOT,
    SandboxProcess,
    cli_env,
    machine_line,
    removal_rows,
    write_job,
    write_removals_csv,
    write_state,
)


def py_spy() -> str | None:
    venv = ROOT / ".venv" / "bin" / "py-spy"
    return str(venv) if venv.exists() else shutil.which("py-spy")


def top_from_raw(path: Path, n: int) -> str:
    """Top self and inclusive frames of py-spy's `--format raw` (collapsed stacks)."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    out = [f"{total} samples", "self:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(n)]
    out.append("inclusive (bulkgroups, aiohttp, asyncio, orjson frames):")
    keep = [(f, c) for f, c in incl.most_common() if re.search(r"bulkgroups/|aiohttp/|asyncio/", f)]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in keep[: n * 2]]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--group-size", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--precheck", action="store_true")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--cprofile", action="store_true", help="use cProfile even with py-spy")
    args = ap.parse_args()
    groups = max(1, args.rows // args.group_size)
    print(machine_line())
    print(f"{groups * args.group_size:,} rows, batch_size {args.batch_size}, precheck "
          f"{args.precheck}, latency {args.latency_ms:g} ms, concurrency 10, limits off")
    with tempfile.TemporaryDirectory(prefix="bg-profile-") as tmp:
        work = Path(tmp)
        state = work / "state.json"
        write_state(state, groups, args.group_size)
        csv_path = work / "input.csv"
        write_removals_csv(csv_path, removal_rows(groups, args.group_size))
        with SandboxProcess(state, "--no-limits", "--latency-ms", str(args.latency_ms)) as sb:
            job = write_job(work, base_url=sb.base_url, input_path=csv_path, rate=10000,
                            concurrency=10, batch_size=args.batch_size, precheck=args.precheck)
            cmd = [PYTHON, "-m", "bulkgroups", "run", str(job), "--quiet"]
            spy = None if args.cprofile else py_spy()
            if spy is not None:
                raw = work / "profile.txt"
                subprocess.run([spy, "record", "--format", "raw", "-r", "250", "-o", str(raw),
                                "--", *cmd], cwd=work, env=cli_env(), check=False,
                               capture_output=True, timeout=900)
                print("py-spy, 250 samples a second")
                print(top_from_raw(raw, args.top))
            else:
                prof = work / "profile.pstats"
                subprocess.run([PYTHON, "-m", "cProfile", "-o", str(prof), "-m", "bulkgroups",
                                "run", str(job), "--quiet"], cwd=work, env=cli_env(),
                               check=False, timeout=900)
                print("cProfile (deterministic; adds overhead per call)")
                stats = pstats.Stats(str(prof))
                stats.sort_stats("tottime").print_stats(args.top)
                stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
