"""One row source (rows/source.py): validate, run --dry-run, plan, run and resume take the same
rows and agree on every row's class; a run reads exactly the input it counted and
fingerprinted, however the file grows meanwhile."""

from __future__ import annotations

import contextlib
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkgroups.job import load_job
from bulkgroups.model import InvalidRow, Row, SkippedRow
from bulkgroups.results.file import Record, decode
from bulkgroups.results.resume import FinishedRows
from bulkgroups.results.stats import Tally
from bulkgroups.rows.readers import InputError
from bulkgroups.rows.source import InputSnapshot, census, rows_for
from bulkgroups.rows.survey import survey
from bulkgroups.runner import RunRequest, run_job
from bulkgroups.sandbox import Sandbox, make_state
from tests.support import finish, last_outcomes, run_cli, start_cli, write_job

_COUNTS = re.compile(r"rows: (\d+) \((\d+) valid, (\d+) invalid(?:, (\d+) duplicate)?\)")


def _groups(sb: Sandbox) -> dict[str, list[str]]:
    return {g: sorted(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


def _mixed_rows(sb: Sandbox) -> tuple[list[dict[str, str]], str]:
    """Valid rows, a protected member, copies (one spelled otherwise) and broken rows."""
    groups = _groups(sb)
    g0 = next(iter(groups))
    m = groups[g0]
    protected = m[5]
    rows = [
        {"op": "remove", "group": g0, "member": m[0]},            # 1 valid
        {"op": "remove", "group": g0, "member": m[1]},            # 2 valid
        {"op": "remove", "group": g0, "member": protected},       # 3 protected: invalid
        {"op": "remove", "group": g0.upper(), "member": m[0].upper()},  # 4 copy of 1
        {"op": "remove", "group": g0, "member": "not-a-uuid"},    # 5 invalid
        {"op": "frobnicate", "group": g0, "member": m[2]},        # 6 invalid op
        {"op": "remove", "group": g0, "member": m[1]},            # 7 copy of 2
        {"op": "remove", "group": g0, "member": protected},       # 8 protected again: invalid
        {"op": "remove", "group": g0, "member": m[3]},            # 9 valid
    ]
    return rows, protected


def _survey_counts(stdout: str) -> tuple[int, int, int, int]:
    found = _COUNTS.search(stdout)
    assert found is not None, stdout
    rows, valid, invalid, dupes = found.groups()
    return int(rows), int(valid), int(invalid), int(dupes or 0)


async def test_every_command_classes_each_row_alike(tmp_path: Path) -> None:
    """One input with protected, duplicate and broken rows: validate, --dry-run, plan and run
    count the same 4 invalid, 2 duplicate and 3 valid rows, and all exit 1; resume then
    sends nothing."""
    async with Sandbox(make_state()) as sb:
        rows, protected = _mixed_rows(sb)
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False},
                        safety={"protected": [protected]})
        validate = await run_cli("validate", str(job))
        dry = await run_cli("run", str(job), "--dry-run")
        plan = await run_cli("plan", str(job), "--json")
        assert sb.log == [r for r in sb.log if r.method == "GET"]  # nothing changed yet
        run = await run_cli("run", str(job), "--quiet")
        deletes = [e for e in sb.log if e.method == "DELETE"]
        sb.clear_log()
        resumed = await run_cli("resume", str(tmp_path / "results.jsonl"), "--quiet")
        assert sb.log == []

    expected = (9, 3, 4, 2)  # rows, valid, invalid, duplicate
    assert _survey_counts(validate.stdout) == expected
    assert _survey_counts(dry.stdout) == expected
    assert "would send at least 3 change requests" in dry.stdout
    totals = orjson.loads(plan.stdout)["total"]
    assert totals["invalid"] == 4
    assert totals["change"] + totals["fail"] == 3  # the valid rows
    assert totals["already"] == 2  # the copies: noop in the run
    assert orjson.loads(plan.stdout)["safety"]["changes"] == 3
    assert orjson.loads(plan.stdout)["safety"]["protected"] == 2

    outcomes = last_outcomes(tmp_path / "results.jsonl")
    by_class = Counter(
        "duplicate" if (o["error"] or "").startswith("duplicate of") else o["status"]
        for o in outcomes.values()
    )
    assert by_class == {"ok": 3, "invalid": 4, "duplicate": 2}
    assert len(deletes) == 3
    assert [row for row, o in outcomes.items() if o["error"] == "protected"] == [3, 8]
    codes = (validate.code, dry.code, plan.code, run.code, resumed.code)
    assert codes == (1, 1, 1, 1, 1), (validate.stderr, dry.stderr, plan.stderr, run.stderr)


async def test_a_clean_input_exits_0_everywhere(tmp_path: Path) -> None:
    """Copies alone are not a fault: validate, --dry-run, plan and run all exit 0."""
    async with Sandbox(make_state()) as sb:
        groups = _groups(sb)
        g0 = next(iter(groups))
        rows = [{"op": "remove", "group": g0, "member": groups[g0][i % 2]} for i in range(4)]
        job = write_job(tmp_path, sb, rows=rows)
        codes = [(await run_cli(*args)).code for args in (
            ("validate", str(job)), ("run", str(job), "--dry-run"),
            ("plan", str(job)), ("run", str(job), "--quiet"))]
    assert codes == [0, 0, 0, 0]


def test_rows_for_classes_and_skips_what_is_final(tmp_path: Path) -> None:
    """In process: the source's classes, and a resume index leaving out final rows, the
    copies still known as copies."""
    g = "11111111-1111-4111-8111-111111111111"
    m = [f"22222222-2222-4222-8222-22222222222{i}" for i in range(4)]
    data = tmp_path / "in.csv"
    data.write_text("op,group,member\n" + "".join(
        f"remove,{g},{x}\n" for x in (m[0], m[1], m[0], "bad", m[2], m[3])))
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        '[job]\nname = "t"\n[target]\nkind = "docspace"\nsandbox = true\n'
        f'[input]\npath = "in.csv"\n[safety]\nprotected = ["{m[3]}"]\n', encoding="utf-8")
    job = load_job(job_file)
    kinds = [type(i).__name__ for i in rows_for(job)]
    assert kinds == ["Row", "Row", "SkippedRow", "InvalidRow", "Row", "InvalidRow"]
    found = survey(rows_for(job))
    assert (found.rows, found.valid, found.invalid, found.duplicates) == (6, 3, 2, 1)
    assert census(rows_for(job)).changes == 3

    done = FinishedRows(max_row=10)
    for row, status in ((1, "ok"), (2, "failed"), (3, "noop")):
        record = decode(orjson.dumps({"row": row, "status": status}))
        assert isinstance(record, Record)
        done.add(record)
    left = list(rows_for(job, resume_index=done))
    assert [i.row for i in left] == [2, 4, 5, 6]
    assert isinstance(left[0], Row) and isinstance(left[1], InvalidRow)
    assert not any(isinstance(i, SkippedRow) for i in left)


def test_reader_stops_at_the_fingerprinted_size(tmp_path: Path) -> None:
    """The snapshot's size bounds the reader: rows written after it are not read, and the
    snapshot still matches the file's first bytes afterwards."""
    g = "11111111-1111-4111-8111-111111111111"
    data = tmp_path / "in.csv"
    data.write_text("op,group,member\n" + "".join(
        f"remove,{g},22222222-2222-4222-8222-{i:012d}\n" for i in range(10)))
    job_file = tmp_path / "job.toml"
    job_file.write_text('[job]\nname = "t"\n[target]\nkind = "docspace"\nsandbox = true\n'
                        '[input]\npath = "in.csv"\n', encoding="utf-8")
    job = load_job(job_file)
    snap = InputSnapshot.of(data)
    items = rows_for(job, upto=snap.size)
    first = [next(items) for _ in range(3)]
    with data.open("a") as f:
        f.write("".join(f"remove,{g},33333333-3333-4333-8333-{i:012d}\n" for i in range(5)))
    rest = list(items)
    assert [i.row for i in first + rest] == list(range(1, 11))
    assert snap.still_in(data)
    assert InputSnapshot.of(data) != snap
    assert len(list(rows_for(job))) == 15
    data.write_text(data.read_text().replace("remove", "Remove", 1))
    assert not snap.still_in(data)


async def test_rows_appended_during_a_run_are_not_part_of_it(tmp_path: Path) -> None:
    """Issue 10.8 for real: max_changes 400, a 300-row input, 500 rows appended while the run
    is paced slowly, then SIGTERM. No appended row is sent; the run's fingerprint is of the
    300 rows; resume finishes exactly those (not refused as "changed since") and says the
    input has grown; every appended member is still in its group."""
    async with Sandbox(make_state(docspace_groups=2, docspace_members=400)) as sb:
        groups = _groups(sb)
        g0, g1 = list(groups)[:2]
        first = [{"op": "remove", "group": g0, "member": m} for m in groups[g0][:300]]
        later = ([{"op": "remove", "group": g0, "member": m} for m in groups[g0][300:]]
                 + [{"op": "remove", "group": g1, "member": m} for m in groups[g1]])
        assert len(later) == 500
        job = write_job(tmp_path, sb, rows=first,
                        limits={"rate": 60, "concurrency": 2, "precheck": False},
                        safety={"max_changes": 400})
        data = tmp_path / "input.csv"
        size = data.stat().st_size
        proc = await start_cli("run", str(job), "--quiet")
        await sb.wait_for_requests(30, timeout_s=30)
        with data.open("a", encoding="utf-8") as f:
            f.write("".join(f"remove,{r['group']},{r['member']},\n" for r in later))
        await sb.wait_for_requests(90, timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        stopped = await finish(proc)
        assert stopped.code == 143, stopped.stderr
        results = tmp_path / "results.jsonl"
        partial = last_outcomes(results)
        assert 0 < len(partial) < 300
        meta: dict[str, Any] = orjson.loads((tmp_path / "results.meta.json").read_bytes())
        assert meta["input_fingerprint"]["size"] == size

        resumed = await run_cli("resume", str(results), "--rate", "1000")
        assert resumed.code == 0, resumed.stderr
        assert "has grown by" in resumed.stderr and "not sent" in resumed.stderr
        after = {g: set(v) for g, v in _groups(sb).items()}
        sent = [e for e in sb.log if e.method == "DELETE"]

    outcomes = last_outcomes(results)
    assert sorted(outcomes) == list(range(1, 301))
    assert all(o["status"] == "ok" for o in outcomes.values())
    assert after[g0] == set(groups[g0][300:])  # the first 300 left, the appended stayed
    assert after[g1] == set(groups[g1])
    assert 300 <= len(sent) < 310  # a row in flight at SIGTERM may be sent again
    meta = orjson.loads((tmp_path / "results.meta.json").read_bytes())
    assert meta["input_fingerprint"]["size"] == size


class _Watching:
    """A RunView that records what the runner shows: the total, and each progress tally."""

    wants_total = True

    def __init__(self) -> None:
        self.totals: list[int | None] = []
        self.finished: list[int] = []
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @contextlib.contextmanager
    def progress(self, total: int | None) -> Iterator[Callable[[Tally], None]]:
        self.totals.append(total)
        yield lambda tally: self.finished.append(tally.finished)


async def test_progress_total_is_the_rows_the_run_takes(tmp_path: Path) -> None:
    """The bar's total comes from the row source: 30 records (not the 33 lines of a file with
    its header and two blank lines), and the run reaches it; a resume's total is the rows it
    still has to do."""
    async with Sandbox(make_state()) as sb:
        groups = _groups(sb)
        g0 = next(iter(groups))
        rows = [{"op": "remove", "group": g0, "member": m} for m in groups[g0][:30]]
        job_file = write_job(tmp_path, sb, rows=rows, limits={"precheck": False})
        data = tmp_path / "input.csv"
        data.write_bytes(data.read_bytes() + b"\r\n\r\n")
        job = load_job(job_file)
        view = _Watching()
        results = tmp_path / "results.jsonl"
        env = {"BG_TEST_TOKEN": "sk-test-key"}
        summary = await run_job(job, RunRequest(results=results), environ=env, view=view)
        assert summary.code == 0
        assert view.totals == [30]
        assert view.finished[-1] == 30
        kept = results.read_bytes().splitlines(keepends=True)[:18]
        results.write_bytes(b"".join(kept))
        again = _Watching()
        summary = await run_job(job, RunRequest(results=results, resume=True), environ=env,
                                view=again)
    assert summary.code == 0 and summary.already == 18
    assert again.totals == [12]
    assert again.finished[-1] == 12


def test_an_input_gone_before_the_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """The input deleted after the job was checked: the snapshot says which file, no
    traceback."""
    with pytest.raises(InputError, match=r"gone\.csv: cannot read: No such file"):
        InputSnapshot.of(tmp_path / "gone.csv")
