"""Choosing the rows to resume, the run lock and the safety filter: pure logic, no server."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import orjson
import pytest

from bulkgroups.identity import norm_id
from bulkgroups.model import InvalidRow, Op, Outcome, Row, Status
from bulkgroups.results.file import Record, ResultsFileError, decode
from bulkgroups.results.lock import Locked, hold, job_lock_path, lock_path, run_lock
from bulkgroups.results.resume import FinishedRows, unfinished
from bulkgroups.rows.guard import count_changes, guard


def line(row: int, status: str) -> bytes:
    o = Outcome(
        row=row, line=row + 1, key="k", op="remove", group="g", member='m"status":"ok"',
        to_group="", status=Status(status), http_status=None, attempts=1, error=None,
        elapsed_ms=1.0, finished_at="2026-11-23T00:00:00.000Z",
    )
    return orjson.dumps(o)


def record(data: bytes) -> Record:
    found = decode(data)
    assert isinstance(found, Record), data
    return found


def test_last_line_for_a_row_wins() -> None:
    """A row failed then ok is finished; ok then failed (a later retry failing) is not."""
    done = FinishedRows(max_row=10)
    for row, status in [(1, "failed"), (1, "ok"), (2, "ok"), (2, "failed"), (3, "invalid"),
                        (4, "pending"), (5, "noop"), (6, "failed")]:
        done.add(record(line(row, status)))
    assert [r for r in range(1, 8) if r in done] == [1, 3, 4, 5]
    assert done.count == 4
    assert done.invalid == 1


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    """A half-written line or a line of another shape is counted as torn, never a crash; a
    whole line is read whatever the order of its fields."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(line(1, "ok") + b"\n" + b'{"row":7,"line":8,"ke\n[1,2]\n'
                     + b'{"status": "ok", "row": 9}\n')
    done = FinishedRows.from_results(path, input_rows=20)
    assert 9 in done and 1 in done and 7 not in done
    assert done.torn == 2


def test_a_line_cut_after_its_status_is_torn(tmp_path: Path) -> None:
    """Issue 10.5: a last line cut just after `"status":"ok"` is not an outcome: its row is
    sent again, and the line is counted torn (the warning's count)."""
    whole = line(5, "ok")
    cut = whole[: whole.rindex(b'"status":"ok"') + len(b'"status":"ok"')]
    assert b'"status":"ok"' in cut and not cut.endswith(b"}")
    path = tmp_path / "r.jsonl"
    path.write_bytes(line(4, "ok") + b"\n" + cut)
    done = FinishedRows.from_results(path, input_rows=10)
    assert 4 in done and 5 not in done
    assert (done.count, done.torn) == (1, 1)
    rows = [Row(row=r, line=r + 1, op=Op.REMOVE, group="g", member="m") for r in (4, 5)]
    assert [item.row for item in unfinished(rows, done)] == [5]


@pytest.mark.parametrize("row", [11, 99_999_999_999, 2**63 - 1, 0, -3])
def test_a_row_outside_the_input_is_garbage_not_memory(tmp_path: Path, row: int) -> None:
    """Issue 10.6: a row number the input cannot have is skipped and counted, and the index
    stays the size of the input (no 12 GB bit array, no MemoryError)."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(line(3, "ok") + b"\n" + b'{"row":%d,"status":"ok"}\n' % row)
    tracemalloc.start()
    try:
        done = FinishedRows.from_results(path, input_rows=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert 3 in done and row not in done and done.count == 1
    assert (done.out_of_range, done.torn) == (1, 0)


def test_a_row_past_64_bits_is_torn(tmp_path: Path) -> None:
    """A number JSON allows but no row can be: skipped, never a crash."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(line(1, "ok") + b"\n" + b'{"row":%d,"status":"ok"}\n' % 10**30)
    done = FinishedRows.from_results(path, input_rows=10)
    assert done.count == 1 and done.torn + done.out_of_range == 1


def test_index_from_file_and_filter(tmp_path: Path) -> None:
    """Reading a results file gives the rows to skip; unfinished() yields only the others."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\n".join(line(r, "ok" if r % 3 else "failed") for r in range(1, 31))
                     + b"\n" + b'{"row":31,"li')
    done = FinishedRows.from_results(path, input_rows=40)
    rows = [Row(row=r, line=r + 1, op=Op.REMOVE, group="g", member="m") for r in range(1, 40)]
    left = [item.row for item in unfinished(rows, done)]
    assert left == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, *range(31, 40)]
    assert done.torn == 1
    assert FinishedRows.from_results(tmp_path / "absent.jsonl", input_rows=40).count == 0


def test_index_stays_small_for_many_rows() -> None:
    """200,000 finished rows fit in about 25 kB of bits."""
    done = FinishedRows(max_row=200_000)
    for r in range(1, 200_001):
        done.add(record(b'{"row":%d,"line":1,"status":"ok"}' % r))
    assert done.count == 200_000
    assert len(done._bits) < 60_000


def test_a_file_that_is_not_results_is_refused(tmp_path: Path) -> None:
    """A CSV in the results' place is a ResultsFileError naming it, not "nothing finished"."""
    path = tmp_path / "r.jsonl"
    path.write_text("op,group,member\nremove,g,m\n", encoding="utf-8")
    with pytest.raises(ResultsFileError, match=r"r\.jsonl: not a results file"):
        FinishedRows.from_results(path, input_rows=10)


def test_second_holder_is_refused_with_the_pid(tmp_path: Path) -> None:
    """While one process holds the lock, another is refused with a message naming the pid."""
    results = tmp_path / "r.jsonl"
    code = (
        "import sys,time; from pathlib import Path; from bulkgroups.results.lock import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(results)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(Locked, match=f"pid {proc.pid}"), run_lock(results):
            pass
    finally:
        proc.kill()
        proc.wait()
    # Killed without unlocking: the kernel released the flock, so the stale lock is taken over.
    assert lock_path(results).exists()
    with run_lock(results):
        assert lock_path(results).read_text().strip() == str(os.getpid())


def test_protected_ids_make_rows_invalid_ignoring_case() -> None:
    """A row naming a protected id in any column becomes invalid with reason 'protected'."""
    rows: list[Row | InvalidRow] = [
        Row(row=1, line=2, op=Op.REMOVE, group="G1", member="Boss"),
        Row(row=2, line=3, op=Op.MOVE, group="g1", member="m", to_group="VIP"),
        Row(row=3, line=4, op=Op.REMOVE, group="g1", member="m"),
        InvalidRow(row=4, line=5, reason="unknown op 'x'"),
    ]
    out = list(guard(rows, frozenset({norm_id(" boss "), norm_id("vip")})))
    assert [getattr(o, "reason", None) for o in out] == [
        "protected", "protected", None, "unknown op 'x'"]
    assert count_changes(out) == 1


def test_lock_files_go_with_the_lock(tmp_path: Path) -> None:
    """Issue 15: the job's and the results file's lock files exist while a run holds them and
    are gone when it ends, also when the run raised."""
    results = tmp_path / "r.jsonl"
    with run_lock(results, job_name="nightly"):
        assert lock_path(results).exists() and job_lock_path(results, "nightly").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), run_lock(results, job_name="nightly"):
        raise RuntimeError("the run failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_locker_rechecks_the_file_after_locking(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The race that removing lock files opens: between our open and our flock the holder
    finishes (unlinks its file) and another run creates a new one. A lock on the old inode
    would hold nothing; the locker sees the name now points elsewhere and locks the new file,
    so a second run is still refused."""
    path = tmp_path / "r.jsonl.lock"
    path.write_text("")
    real = fcntl.flock
    calls: list[int] = []

    def racing_flock(fd: int, operation: int) -> None:
        if not calls:
            path.unlink()  # the holder we opened after has finished ...
            path.write_text("")  # ... and the next run created the file afresh
        calls.append(operation)
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", racing_flock)
    with hold(path, what="r"):
        assert len(calls) == 2  # locked the orphan, saw it, locked the file now there
        with pytest.raises(Locked), hold(path, what="r"):
            pass
        assert path.read_text().strip() == str(os.getpid())
    assert not path.exists()


def test_lock_files_are_owner_only_while_held(tmp_path: Path) -> None:
    """Under umask 0 the lock files (they hold a pid) are created 0600."""
    results = tmp_path / "r.jsonl"
    old = os.umask(0)
    try:
        with run_lock(results, job_name="nightly"):
            modes = {os.stat(p).st_mode & 0o777
                     for p in (lock_path(results), job_lock_path(results, "nightly"))}
    finally:
        os.umask(old)
    assert modes == {0o600}
