"""Shared helpers of the benchmarks: a sandbox in its own process, job/state/input files, the
real CLI in a subprocess with its own resource usage, the sandbox's request log, and tables.

Everything here talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import datetime as dt
import hashlib
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bulkgroups.sandbox.log import max_in_window as max_in_window  # for the scripts
from bulkgroups.sandbox.log import max_overlap as max_overlap

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"
PYTHON = str(VENV / "python") if (VENV / "python").exists() else sys.executable
BULKGROUPS = str(VENV / "bulkgroups") if (VENV / "bulkgroups").exists() else ""
OUT = ROOT / "benchmarks" / "out"  # git-ignored: raw results of the last runs

# The sandbox's test credentials (bulkgroups.sandbox.seed): written into every state here.
API_KEY = "sk-bench-key"
TOKEN_ENV = "BG_BENCH_TOKEN"
AX_TOKEN = "adm-bench-token"

HOST = "127.0.0.1"


# --- ids, state, input ------------------------------------------------------------------


def member_id(group: int, i: int) -> str:
    """A valid, deterministic, lower-case UUID for member `i` of group `group` (cheap to make by
    the million, unlike uuid4)."""
    return f"{i:08x}-{group:04x}-4000-8000-{(group * 7919 + i) & 0xFFFFFFFFFFFF:012x}"


def group_id(group: int) -> str:
    return f"{group:08x}-6700-4000-9000-00000000beef"


def write_state(
    path: Path, groups: int, members_per_group: int, *, users: bool = True
) -> list[str]:
    """A sandbox state with `groups` DocSpace groups of `members_per_group` members each, written
    with orjson straight to `path`. Each member has a user record: as DocSpace does, the
    sandbox lists and removes only existing accounts (a member without one is hidden from reads,
    so a precheck finds nothing to do, and a removal leaves it in place). `users=False` only
    for a test of the client alone. Returns the group ids."""
    gids = [group_id(g) for g in range(groups)]
    group_map: dict[str, Any] = {}
    user_map: dict[str, Any] = {}
    for g, gid in enumerate(gids):
        members = [member_id(g, i) for i in range(members_per_group)]
        group_map[gid] = {"name": f"Bench group {g}", "members": members}
        if users:
            for m in members:
                user_map[m] = {"name": "Bench User", "kind": "user"}
    state = {
        "docspace": {
            "api_keys": {API_KEY: ["accounts:read", "accounts:write"]},
            "accounts": {},
            "users": user_map,
            "groups": group_map,
        },
        "adaxes": {"tokens": [AX_TOKEN], "accounts": {}, "objects": {}},
    }
    path.write_bytes(orjson.dumps(state))
    return gids


def removal_rows(groups: int, per_group: int, *, start: int = 0) -> Iterator[tuple[str, str]]:
    """(group, member) for members start..start+per_group of each group, group after group (the
    order a cleanup export usually has: sorted by group)."""
    for g in range(groups):
        gid = group_id(g)
        for i in range(start, start + per_group):
            yield gid, member_id(g, i)


def write_removals_csv(path: Path, pairs: Iterable[tuple[str, str]]) -> int:
    """A CSV input `op,group,member,to_group`, streamed; returns the rows written."""
    n = 0
    with open(path, "w", newline="", encoding="utf-8", buffering=1 << 20) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["op", "group", "member", "to_group"])
        for gid, mid in pairs:
            w.writerow(["remove", gid, mid, ""])
            n += 1
    return n


def write_removals(
    folder: Path, groups: int, per_group: int, *, shuffled: bool = False, seed: int = 13
) -> tuple[Path, Path]:
    """A sandbox state of `groups` groups of `per_group` members and a CSV that removes every
    member, sorted by group or shuffled (what a hand-made list or a report joined on users
    looks like); the state is reused when it is already there. Returns (state, csv)."""
    state = folder / f"state-{groups}x{per_group}.json"
    if not state.exists():
        write_state(state, groups, per_group)
    csv_path = folder / f"input-{groups}x{per_group}-{'shuffled' if shuffled else 'sorted'}.csv"
    pairs: Iterable[tuple[str, str]] = removal_rows(groups, per_group)
    if shuffled:
        listed = list(pairs)
        random.Random(seed).shuffle(listed)
        pairs = listed
    write_removals_csv(csv_path, pairs)
    return state, csv_path


def write_job(
    folder: Path,
    *,
    base_url: str,
    input_path: Path,
    results: str = "results.jsonl",
    name: str = "bench",
    **limits: Any,
) -> Path:
    """A job file for the sandbox at `base_url`; `limits` go into [limits] as given. The safety
    rails that would stop a benchmark (max_changes, failure ratio, the group guard) are opened
    wide."""
    def toml(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        return str(v)

    lines = [
        "[job]", f'name = "{name}"',
        "[target]", 'kind = "docspace"', f'base_url = "{base_url}"', f'token_env = "{TOKEN_ENV}"',
        "[input]", f'path = "{input_path.resolve()}"',
        "[output]", f'results = "{results}"',
        "[limits]", *(f"{k} = {toml(v)}" for k, v in limits.items()),
        # The group guard reads every group before the first write (G / rate seconds) and
        # holds runs that empty groups, which is what these inputs do.
        "[safety]", "max_changes = 100000000", "abort_failure_ratio = 1.0",
        "max_group_removal = 1.0",
    ]
    job = folder / f"{name}.toml"
    job.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return job


# --- the code under test -----------------------------------------------------------------------

_SNAPSHOT: Path | None = None


def code_dir() -> Path:
    """A private copy of the package, taken once per benchmark run: every child (CLI and
    sandbox) imports it through PYTHONPATH, so the whole run measures one version of the code
    even while the work tree is being edited. BG_BENCH_LIVE=1 measures the live tree instead."""
    global _SNAPSHOT
    if _SNAPSHOT is None:
        tmp = Path(tempfile.mkdtemp(prefix="bg-code-"))
        shutil.copytree(ROOT / "bulkgroups", tmp / "bulkgroups",
                        ignore=shutil.ignore_patterns("__pycache__"))
        atexit.register(shutil.rmtree, tmp, True)
        _SNAPSHOT = tmp
    return _SNAPSHOT


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BG_")}
    if os.environ.get("BG_BENCH_LIVE") != "1":
        env["PYTHONPATH"] = str(code_dir())
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


_VERSION = ""


def code_version() -> str:
    """HEAD, how many package files differ from it, and a hash of the code measured (taken
    once, with the snapshot)."""
    global _VERSION
    if not _VERSION:
        _VERSION = _code_version()
    return _VERSION


def _code_version() -> str:
    root = ROOT / "bulkgroups" if os.environ.get("BG_BENCH_LIVE") == "1" else code_dir()
    root = root / "bulkgroups" if (root / "bulkgroups").is_dir() else root
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    head = dirty = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip() or "?"
        status = subprocess.run(["git", "status", "--porcelain", "--", "bulkgroups"], cwd=ROOT,
                                text=True, capture_output=True, timeout=10).stdout
        dirty = str(len([ln for ln in status.splitlines() if ln.strip()]))
    return f"code: HEAD {head} + {dirty} changed package files, sha256 {digest.hexdigest()[:12]}"


def cli_env() -> dict[str, str]:
    return child_env({TOKEN_ENV: API_KEY})


# --- the sandbox in its own process -------------------------------------------------------


def _cpu_s(pid: int) -> float:
    """user+sys CPU seconds of a live process, from /proc (0 when unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class SandboxProcess:
    """`bulkgroups sandbox --port 0 --state STATE ...` in a child process; the URL is read from
    what it prints. Use as a context manager; it is stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, state: Path, *args: str, start_timeout_s: float = 120.0) -> None:
        self.args = [PYTHON, "-m", "bulkgroups", "sandbox", "--host", HOST, "--port", "0",
                     "--state", str(state), *args]
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self._lines: list[str] = []

    def __enter__(self) -> SandboxProcess:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=ROOT, env=child_env(),
        )
        assert self.proc.stdout is not None
        found = threading.Event()

        def pump() -> None:  # keep reading so the pipe never fills
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self._lines.append(line.rstrip("\n"))
                m = re.match(r"DocSpace\s+(http://\S+)", line)
                if m:
                    self.base_url = m.group(1)
                if line.startswith("Serving until"):
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(self.start_timeout_s) or not self.base_url:
            self.stop()
            raise RuntimeError("sandbox did not start:\n" + "\n".join(self._lines[-20:]))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_s(self) -> float:
        return _cpu_s(self.pid)

    def peak_rss_mb(self) -> float:
        return _rss_mb(self.pid)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    # -- control routes --

    def _get(self, path: str, timeout_s: float = 60.0) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=timeout_s) as resp:
            return orjson.loads(resp.read())

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        """`GET /_sandbox/log`: one dict per request (start/end are time.monotonic())."""
        return list(self._get(f"/_sandbox/log?since={since}"))

    def clear_log(self) -> None:
        req = urllib.request.Request(self.base_url + "/_sandbox/log", method="DELETE")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def state(self) -> dict[str, Any]:
        return dict(self._get("/_sandbox/state"))


# --- the real CLI in a subprocess -----------------------------------------------------------


@dataclass
class ChildRun:
    code: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float  # peak RSS of the child's own image: VmHWM, polled while it runs
    timed_out: bool
    stderr: str = ""
    stopped_at: float | None = None  # time.time() when SIGTERM was sent (stop_after_s)
    stopped_mono: float | None = None  # the same moment, time.monotonic()
    wait4_maxrss_mb: float = 0.0  # ru_maxrss: NOT the child's own peak, see run_child

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def run_child(args: Sequence[str], *, timeout_s: float, cwd: Path | None = None,
              env: dict[str, str] | None = None, stop_after_s: float | None = None,
              grace_s: float = 15.0) -> ChildRun:
    """Run a command to the end and take its own resource usage: CPU time from wait4() (that
    one child, not every child so far), peak RSS from its VmHWM polled every 5 ms.

    Not ru_maxrss: Linux carries the high-water RSS of the image a process replaces across
    execve() into ru_maxrss, and subprocess starts children by (v)fork + exec, whose image before
    execve() is this (parent) process. A driver that built a 1M-member state before spawning
    would see its own size reported as the child's (we saw 165 MB for a 47 MB `validate`).
    VmHWM belongs to the new image only; it only grows, so the last reading before exit is the
    peak to within 5 ms of the end.

    `stop_after_s`: send SIGTERM then (bulkgroups stops taking rows and finishes those in
    flight), a measurement that ends by design, not a timeout. Either way the child gets SIGTERM
    at `timeout_s` at the latest and SIGKILL `grace_s` after its SIGTERM."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=err, cwd=cwd,
                                env=env if env is not None else cli_env())
        term_at = started + min(timeout_s, stop_after_s if stop_after_s is not None else timeout_s)
        termed: float | None = None
        stopped_at = stopped_mono = None
        timed_out = False
        hwm = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            hwm = max(hwm, _rss_mb(proc.pid))
            now = time.perf_counter()
            if termed is None and now > term_at:
                termed = now
                timed_out = stop_after_s is None or now - started >= timeout_s
                stopped_at, stopped_mono = time.time(), time.monotonic()
                proc.send_signal(signal.SIGTERM)
            elif termed is not None and now > termed + grace_s:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    return ChildRun(
        code=proc.returncode, wall_s=wall, user_s=usage.ru_utime, sys_s=usage.ru_stime,
        maxrss_mb=hwm, timed_out=timed_out, stderr=text[-2000:],
        stopped_at=stopped_at, stopped_mono=stopped_mono,
        wait4_maxrss_mb=usage.ru_maxrss / 1024,
    )


def bulkgroups_cmd(*args: str) -> list[str]:
    """The installed console script when there is one (what a user runs), else `-m`."""
    return [BULKGROUPS, *args] if BULKGROUPS else [PYTHON, "-m", "bulkgroups", *args]


# --- results files ----------------------------------------------------------------------------


def _iso(s: str) -> float:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@dataclass
class ResultsSummary:
    rows: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    first_s: float = 0.0
    last_s: float = 0.0

    @property
    def span_s(self) -> float:
        return self.last_s - self.first_s

    @property
    def rows_per_s(self) -> float:
        """Rows a second between the first and the last finished row (start-up excluded)."""
        return (self.rows - 1) / self.span_s if self.rows > 1 and self.span_s > 0 else 0.0


def summarize_results(path: Path, *, until: float | None = None) -> ResultsSummary:
    """Counts by status and the first/last `finished_at` of a results file, streamed; with
    `until` (a time.time()), only rows finished by then."""
    s = ResultsSummary()
    cutoff = (dt.datetime.fromtimestamp(until, dt.UTC).isoformat(timespec="milliseconds")
              .replace("+00:00", "Z") if until is not None else None)
    first = last = ""
    with open(path, "rb") as f:
        for line in f:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            t = obj.get("finished_at") or ""
            if cutoff is not None and t > cutoff:
                continue
            s.rows += 1
            st = obj.get("status", "?")
            s.by_status[st] = s.by_status.get(st, 0) + 1
            if t and (not first or t < first):
                first = t
            if t > last:
                last = t
    if first:
        s.first_s, s.last_s = _iso(first), _iso(last)
    return s


# --- log analysis -----------------------------------------------------------------------------




# --- reporting --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def machine_line() -> str:
    m = machine()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {m['cores']} cores ({m['cpu']}), {m['memory']}, Python {m['python']}, "
            f"{m['date']}; client and sandbox share these cores; load average {load}\n"
            + code_version())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, r in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if n == 0:
            out.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def save(name: str, text: str, data: Any) -> None:
    """Keep the last run's table and raw figures under benchmarks/out/ (git-ignored)."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.md").write_text(text + "\n", encoding="utf-8")
    (OUT / f"{name}.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


def publish(name: str, *, quick: bool, parts: Sequence[str], data: Any) -> None:
    """The machine line, then `parts` (tables, notes) a blank line apart: printed, and kept
    by `save` as NAME or NAME-quick."""
    out = "\n\n".join([machine_line(), *parts])
    print()
    print(out)
    save(f"{name}-quick" if quick else name, out, data)


def checks_table(checks: Sequence[Sequence[Any]]) -> str:
    """The targets of a script, each with what was measured and met/MISSED."""
    return table(["target", "measured", "verdict"], checks)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
