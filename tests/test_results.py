"""The results file and its metadata, and the latency tallies."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bulkgroups.model import Outcome, Status
from bulkgroups.results.file import (
    BLANK,
    OUT_OF_RANGE,
    TORN,
    Record,
    ResultsFileError,
    ResultsReader,
    ResultsUnwritable,
    ResultsWriter,
    decode,
    meta_path,
    read_meta,
    write_meta,
)
from bulkgroups.results.stats import LatencyHistogram
from bulkgroups.sandbox import Sandbox, make_state
from tests.support import Done, run_cli, write_job


def outcome(row: int, status: Status = Status.OK) -> Outcome:
    return Outcome(
        row=row, line=row + 1, key="k", op="remove", group="g", member="m", to_group="",
        status=status, http_status=200, attempts=1, error=None, elapsed_ms=1.5,
        finished_at="2026-11-23T10:00:00.000Z",
    )


def test_lines_carry_the_documented_fields(tmp_path: Path) -> None:
    """Each line is one JSON object with every field DESIGN.md names, in order."""
    path = tmp_path / "r.jsonl"
    writer = ResultsWriter(path)
    writer.write([outcome(1), outcome(2, Status.FAILED)])
    writer.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2
    first = orjson.loads(lines[0])
    assert list(first)[:13] == [
        "row", "line", "key", "op", "group", "member", "to_group", "status", "http_status",
        "attempts", "error", "elapsed_ms", "finished_at",
    ]
    assert orjson.loads(lines[1])["status"] == "failed"


def test_files_are_owner_only(tmp_path: Path) -> None:
    """Results and metadata are created readable by the owner only."""
    path = tmp_path / "r.jsonl"
    ResultsWriter(path).close()
    write_meta(path, {"a": 1})
    for p in (path, meta_path(path)):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert read_meta(path) == {"a": 1}
    assert meta_path(path).name == "r.meta.json"


def test_a_torn_last_line_is_closed_before_appending(tmp_path: Path) -> None:
    """Appending after a crash mid-write starts on a fresh line, so good lines stay whole."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(orjson.dumps({"row": 1}) + b"\n" + b'{"row": 2, "sta')
    writer = ResultsWriter(path)
    writer.write([outcome(3)])
    writer.close()
    lines = path.read_bytes().splitlines()
    assert lines[1] == b'{"row": 2, "sta'
    assert orjson.loads(lines[2])["row"] == 3


def test_latency_percentiles_within_two_percent() -> None:
    """The histogram's percentiles land within about 2 % of the exact ones."""
    h = LatencyHistogram()
    values = [float(v) for v in range(1, 10_001)]
    for v in values:
        h.add(v)
    p50, p95 = h.percentile(50), h.percentile(95)
    assert p50 is not None and abs(p50 - 5000) / 5000 < 0.03
    assert p95 is not None and abs(p95 - 9500) / 9500 < 0.03
    assert h.percentile(100) == 10_000
    assert LatencyHistogram().percentile(50) is None


# -- the one reader -------------------------------------------------------------------------


def test_records_read_back_typed_with_their_place(tmp_path: Path) -> None:
    """The reader gives a frozen record per whole line, with where it starts and its size."""
    path = tmp_path / "r.jsonl"
    writer = ResultsWriter(path)
    writer.write([outcome(1), outcome(2, Status.FAILED)])
    writer.close()
    reader = ResultsReader(path)
    records = list(reader)
    assert [(r.row, r.status) for r in records] == [(1, Status.OK), (2, Status.FAILED)]
    first, second = records
    assert (first.op, first.group, first.member, first.to_group) == ("remove", "g", "m", "")
    assert (first.http_status, first.attempts, first.error, first.elapsed_ms) == (200, 1, None, 1.5)
    assert (first.moved, first.left, first.line, first.key) == ((), (), 2, "k")
    assert first.offset == 0 and second.offset == first.size
    assert path.read_bytes()[second.offset:].startswith(b'{"row":2,')
    with pytest.raises(AttributeError):
        first.row = 5  # type: ignore[misc]
    assert (reader.records, reader.torn, reader.out_of_range) == (2, 0, 0)


def test_a_wrong_type_reads_as_empty_never_a_crash() -> None:
    """Fields of the wrong type read as empty; row and status decide whether it is a line."""
    found = decode(b'{"row":3,"status":"ok","op":7,"group":null,"moved":["a",5,""],'
                   b'"attempts":true,"elapsed_ms":"x","error":{"a":1}}')
    assert isinstance(found, Record)
    assert (found.op, found.group, found.moved, found.attempts, found.elapsed_ms,
            found.error) == ("", "", ("a",), 0, None, None)
    assert decode(b'{"row":3,"status":"exploded"}') == TORN
    assert decode(b'{"row":"3","status":"ok"}') == TORN
    assert decode(b'{"row":3.0,"status":"ok"}') == TORN
    assert decode(b'{"row":true,"status":"ok"}') == TORN
    assert decode(b'{"row":12,"status":"ok"}', max_row=11) == OUT_OF_RANGE
    assert decode(b"   \n") == BLANK


def test_every_status_reads_back() -> None:
    """`Status` is the list: each of its values is a status the reader takes."""
    for status in Status:
        found = decode(orjson.dumps(outcome(1, status)))
        assert isinstance(found, Record) and found.status is status


@pytest.mark.parametrize(("content", "problem"), [
    (b"op,group,member\nremove,g,m\n", "not a results file (it begins 'op,group,member')"),
    (b'[job]\nname = "x"\n', "not a results file (it begins '[job]')"),
    (b"\x00\x01\x02PK\x03\x04", "not a results file (binary data)"),
    (b'{"op":"remove","group":"g"}\n', "not a results file (no line is a bulkgroups outcome)"),
    (b"", "is empty: no outcome recorded in it"),
    (b"\n\n", "is empty: no outcome recorded in it"),
])
def test_a_file_that_is_not_results_is_said_so(tmp_path: Path, content: bytes,
                                               problem: str) -> None:
    """A CSV, a job file, a binary, a JSONL input, an empty file: a ResultsFileError with one
    line naming the file and what is wrong."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    with pytest.raises(ResultsFileError) as info:
        list(ResultsReader(path, require_lines=True))
    assert str(info.value) == f"{path}: {problem}"


def test_a_lone_torn_first_line_is_still_a_results_file(tmp_path: Path) -> None:
    """A run killed during its first write leaves only a torn line: that is a results file
    with nothing finished (resume sends every row), not someone else's file."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(orjson.dumps(outcome(1))[:30])
    reader = ResultsReader(path, require_lines=True)
    assert list(reader) == [] and reader.torn == 1


def test_missing_and_folder_results_are_named(tmp_path: Path) -> None:
    with pytest.raises(ResultsFileError, match="no such file"):
        list(ResultsReader(tmp_path / "absent.jsonl"))
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(ResultsFileError, match="is a folder"):
        list(ResultsReader(tmp_path / "d.jsonl"))
    with pytest.raises(ResultsFileError, match="is a folder"):
        ResultsWriter(tmp_path / "d.jsonl")


# -- metadata -------------------------------------------------------------------------------

GOOD_META = orjson.dumps({"job": "/j.toml", "runs": [{"started_at": "2026-11-23T10:00:00Z"}]})
BROKEN_META = {
    "truncated": (GOOD_META[:20], "not valid JSON (truncated?)"),
    "empty": (b"", "is empty"),
    "binary": (b"\x00\xff\xfe\x01binary", "binary data"),
    "list": (b"[1, 2]", "holds a JSON list"),
    "runs-not-a-list": (b'{"runs": {"a": 1}}', "'runs' is not a list"),
    "run-not-an-object": (b'{"runs": [3]}', "'runs' holds an entry that is not an object"),
    "job-not-a-string": (b'{"job": 5}', "'job' is not a string"),
}


@pytest.mark.parametrize("kind", [*BROKEN_META, "folder"])
def test_broken_metadata_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    """Each broken metadata file: a ResultsFileError naming the metadata file, one line."""
    results = tmp_path / "r.jsonl"
    if kind == "folder":
        meta_path(results).mkdir()
        problem = "is a folder"
    else:
        content, problem = BROKEN_META[kind]
        meta_path(results).write_bytes(content)
    with pytest.raises(ResultsFileError) as info:
        read_meta(results)
    message = str(info.value)
    assert message.startswith(f"{meta_path(results)}: ") and problem in message
    assert "\n" not in message
    assert read_meta(tmp_path / "none.jsonl") is None


# -- full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at `where` (needs root: CI has it); skips the test without."""
    where.mkdir(exist_ok=True)
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8); CI runs as root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def many(start: int, n: int) -> list[Outcome]:
    return [outcome(r) for r in range(start, start + n)]


def fill(writer: ResultsWriter) -> tuple[int, ResultsUnwritable]:
    """Write batches until the disk is full: the first row not written, and the error."""
    row = 1
    for _ in range(10_000):
        try:
            writer.write(many(row, 37))  # 37 lines do not divide a page: a partial write
        except ResultsUnwritable as exc:
            return row, exc
        row += 37
    raise AssertionError("the disk never filled")


def test_a_full_disk_raises_unwritable_and_leaves_whole_lines(tmp_path: Path) -> None:
    """Issue 10.4: on ENOSPC the writer raises ResultsUnwritable("disk full"), cuts a batch
    that went in half way back to the last whole line, refuses every later write at once;
    once there is room a new writer (a resume) appends whole lines after the good ones."""
    with tmpfs(tmp_path / "small", "size=64k,mode=700") as folder:
        path = folder / "r.jsonl"
        writer = ResultsWriter(path)
        row, error = fill(writer)
        assert error.reason == "disk full" and error.path == path
        assert isinstance(error, OSError) and error.errno == errno.ENOSPC
        assert str(error) == f"cannot write the results: disk full ({path})"
        with pytest.raises(ResultsUnwritable):
            writer.write(many(row, 1))
        writer.close()
        data = path.read_bytes()
        assert data.endswith(b"\n")
        reader = ResultsReader(path)
        assert [r.row for r in reader] == list(range(1, row))  # no half batch, no torn line
        assert reader.torn == 0
        subprocess.run(["mount", "-o", "remount,size=1m", str(folder)], check=True)
        again = ResultsWriter(path)
        again.write(many(row, 37))
        again.close()
        assert [r.row for r in ResultsReader(path)] == list(range(1, row + 37))


def test_a_read_only_folder_is_a_results_file_error(tmp_path: Path) -> None:
    """A results folder on a read-only file system: ResultsFileError naming the file."""
    with tmpfs(tmp_path / "ro", "ro,size=64k") as folder:
        with pytest.raises(ResultsFileError, match="read-only file system"):
            ResultsWriter(folder / "r.jsonl")
        with pytest.raises(ResultsFileError, match="read-only file system"):
            write_meta(folder / "r.jsonl", {"a": 1})


# -- end to end: broken files around the results (issue 10.10, issue 15) --------------------


def one_clean_line(done: Done) -> str:
    """The CLI said one line on stderr, and no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def some_rows(sb: Sandbox) -> list[dict[str, str]]:
    groups = sb.dump()["docspace"]["groups"]
    g0 = next(iter(groups))
    return [{"op": "remove", "group": g0, "member": m} for m in sorted(groups[g0]["members"])[:3]]


def results_line(row: int) -> bytes:
    return orjson.dumps(outcome(row, Status.FAILED)) + b"\n"


@pytest.mark.parametrize("kind", [*BROKEN_META, "folder"])
@pytest.mark.parametrize("command", ["run", "resume"])
async def test_broken_metadata_exits_2_and_sends_nothing(tmp_path: Path, kind: str,
                                                         command: str) -> None:
    """A truncated, empty, binary or wrongly shaped RESULTS.meta.json, or a folder in its
    place: `run` and `resume` exit 2 with one line naming it, and send nothing."""
    async with Sandbox(make_state()) as sb:
        job = write_job(tmp_path, sb, rows=some_rows(sb))
        results = tmp_path / "results.jsonl"
        if command == "resume":
            results.write_bytes(results_line(1))
        meta = meta_path(results)
        if kind == "folder":
            meta.mkdir()
        else:
            meta.write_bytes(BROKEN_META[kind][0])
        args = ("run", str(job)) if command == "run" else ("resume", str(results))
        done = await run_cli(*args)
        assert done.code == 2, done.stderr
        line = one_clean_line(done)
        assert line.startswith(f"bulkgroups: {meta}: ")
        assert sb.log == []
    if command == "resume":
        assert results.read_bytes() == results_line(1)


@pytest.mark.parametrize("content", [b"op,group,member\nremove,g,m\n", b"[job]\nname='x'\n",
                                     b"\x89PNG\r\n\x1a\n\x00\x00", b'{"op":"remove"}\n'])
async def test_resume_of_a_file_that_is_not_results_exits_2(tmp_path: Path,
                                                            content: bytes) -> None:
    """`resume` on a file that is not a results file (its metadata fine): exit 2 naming it,
    nothing sent, the file untouched."""
    async with Sandbox(make_state()) as sb:
        job = write_job(tmp_path, sb, rows=some_rows(sb))
        results = tmp_path / "results.jsonl"
        results.write_bytes(content)
        write_meta(results, {"job": str(job), "runs": []})
        done = await run_cli("resume", str(results))
        assert done.code == 2, done.stderr
        assert one_clean_line(done).startswith(f"bulkgroups: {results}: not a results file")
        assert sb.log == []
    assert results.read_bytes() == content


async def test_a_folder_in_place_of_the_results_exits_2(tmp_path: Path) -> None:
    async with Sandbox(make_state()) as sb:
        job = write_job(tmp_path, sb, rows=some_rows(sb))
        (tmp_path / "results.jsonl").mkdir()
        done = await run_cli("run", str(job))
        assert done.code == 2, done.stderr
        assert "results.jsonl: is a folder" in one_clean_line(done)
        assert sb.log == []


@pytest.mark.parametrize("command", ["run", "resume"])
async def test_a_read_only_results_folder_exits_2(tmp_path: Path, command: str) -> None:
    """Results on a read-only file system (a real read-only mount): exit 2, one line naming
    the folder and "read-only file system", nothing sent."""
    async with Sandbox(make_state()) as sb:
        job = write_job(tmp_path, sb, rows=some_rows(sb))
        folder = tmp_path / "ro"
        folder.mkdir()
        results = folder / "results.jsonl"
        if command == "resume":
            results.write_bytes(results_line(1))
            write_meta(results, {"job": str(job), "runs": []})
        job.write_text(job.read_text().replace('results = "results.jsonl"',
                                               'results = "ro/results.jsonl"'))
        with tmpfs_bind_ro(folder):
            args = ("run", str(job)) if command == "run" else ("resume", str(results))
            done = await run_cli(*args)
        assert done.code == 2, done.stderr
        line = one_clean_line(done)
        assert str(folder) in line and "read-only file system" in line
        assert sb.log == []


@contextlib.contextmanager
def tmpfs_bind_ro(folder: Path) -> Iterator[None]:
    """`folder` as it is, made read-only by a read-only bind mount over it (needs root)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root and mount(8); CI runs as root")
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_a_job_error_creates_nothing_and_a_run_leaves_no_lock(tmp_path: Path) -> None:
    """Issue 15: an unset token variable exits 2 and leaves no results, no metadata and no
    lock files; a run that goes through removes its lock files."""
    async with Sandbox(make_state()) as sb:
        job = write_job(tmp_path, sb, rows=some_rows(sb))
        before = sorted(p.name for p in tmp_path.iterdir())
        broken = tmp_path / "broken.toml"
        broken.write_text(job.read_text().replace('"BG_TEST_TOKEN"', '"BG_TEST_UNSET"'))
        done = await run_cli("run", str(broken))
        assert done.code == 2, done.stderr
        assert "BG_TEST_UNSET" in one_clean_line(done)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "broken.toml"])
        assert sb.log == []
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        assert sb.log != []
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "results.jsonl" in names and "results.meta.json" in names
    assert not [n for n in names if "lock" in n], names


@pytest.mark.parametrize(("state", "problem"), [
    (b'{"docspace": {"groups": ', "is not valid JSON"),
    (b"", "is not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"docspace": []}', "must be objects"),
    (b'{"adaxes": {"tokens": 5}}', "adaxes.tokens must be a list"),
])
@pytest.mark.parametrize("command", ["run", "plan", "validate"])
async def test_a_broken_sandbox_state_is_a_job_error(tmp_path: Path, state: bytes, problem: str,
                                                    command: str) -> None:
    """A sandbox_state file that is not JSON or not a state: `run`, `plan` and `validate`
    exit 2 with one line naming the job key and the state file."""
    (tmp_path / "input.csv").write_text("op,group,member\n", encoding="utf-8")
    (tmp_path / "state.json").write_bytes(state)
    job = tmp_path / "job.toml"
    job.write_text('[job]\nname = "s"\n[target]\nkind = "docspace"\nsandbox = true\n'
                   'sandbox_state = "state.json"\n[input]\npath = "input.csv"\n',
                   encoding="utf-8")
    done = await run_cli(command, str(job))
    assert done.code == 2, done.stderr
    line = one_clean_line(done)
    assert "[target] sandbox_state" in line and "state.json" in line and problem in line
    assert not (tmp_path / "results.jsonl").exists()
