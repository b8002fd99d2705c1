"""`bulkgroups report`: figures of a results file, its --json, --failed-csv and --html."""

from __future__ import annotations

import shutil
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from click.testing import CliRunner, Result

from bulkgroups.cli.report import report_command, undo_command
from bulkgroups.model import Row, Status, TargetKind
from bulkgroups.results.file import read_meta
from bulkgroups.results.report import (
    MAX_EXAMPLE_ROWS,
    MAX_MESSAGES,
    OTHER_ERRORS,
    STATUSES,
    scan_results,
)
from bulkgroups.results.resume import FinishedRows
from bulkgroups.rows.readers import read_rows

DATA = Path(__file__).parent / "data" / "reports"
G1 = "3f1c2a9e-8b1d-4c5e-9a7f-1b2c3d4e5f60"
DEAD = "00000000-0000-4000-8000-00000000dead"


def member(i: int) -> str:
    return f"5e0c7a1b-2d3e-4f50-8a6b-7c8d9e0f{i:04d}"


def cli() -> click.Group:
    group = click.Group("bulkgroups")
    group.add_command(report_command, "report")
    group.add_command(undo_command, "undo")
    return group


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli(), list(args))


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """The fixture results file (two runs, a torn line) and its metadata, in tmp_path."""
    for name in ("mixed.jsonl", "mixed.meta.json"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path / "mixed.jsonl"


def line(row: int, status: str = "ok", **extra: Any) -> bytes:
    obj: dict[str, Any] = {
        "row": row, "line": row + 1, "key": "k", "op": "remove", "group": G1,
        "member": member(row % 10000), "to_group": "", "status": status, "http_status": 200,
        "attempts": 1, "error": None, "elapsed_ms": 5.0,
        "finished_at": "2026-11-23T10:00:00.000Z", "moved": None, "left": None,
    }
    obj.update(extra)
    return orjson.dumps(obj) + b"\n"


# -- figures ----------------------------------------------------------------------------------


def test_fixture_counts_each_row_once_by_its_last_line(mixed: Path) -> None:
    """Counts and by_op take each row's last line: failed-then-ok is ok, the torn line is not."""
    report = scan_results(mixed, read_meta(mixed)).report()
    assert report.counts == {
        "ok": 4, "noop": 1, "failed": 2, "invalid": 2, "pending": 1, "stale": 0}
    assert report.by_op == {
        "other": {"ok": 0, "noop": 0, "failed": 0, "invalid": 1, "pending": 0, "stale": 0},
        "remove": {"ok": 3, "noop": 0, "failed": 2, "invalid": 1, "pending": 0, "stale": 0},
        "move": {"ok": 1, "noop": 0, "failed": 0, "invalid": 0, "pending": 0, "stale": 0},
        "move_all": {"ok": 0, "noop": 0, "failed": 0, "invalid": 0, "pending": 1, "stale": 0},
        "add": {"ok": 0, "noop": 1, "failed": 0, "invalid": 0, "pending": 0, "stale": 0},
    }
    assert (report.rows, report.lines, report.unreadable) == (10, 13, 1)


def test_fixture_errors_are_the_last_lines_grouped_by_exact_message(mixed: Path) -> None:
    """A row's error is its last line's: row 9's 404 was replaced by a 500 on resume."""
    report = scan_results(mixed, read_meta(mixed)).report()
    assert [(e.message, e.count, e.rows) for e in report.errors] == [
        ("HTTP 500: boom", 1, (9,)),
        ("The group could not be found.", 1, (5,)),
        ("member: not a UUID", 1, (6,)),
        ("unknown op 'explode'", 1, (7,)),
    ]


def test_fixture_retries_latency_and_rate(mixed: Path) -> None:
    """Retries and latency count every line; the rate is lines over the runs' summed time."""
    report = scan_results(mixed, read_meta(mixed)).report()
    assert report.retries == 2 + 5 + 1
    assert report.requests == 11
    assert report.latency_ms.p50 == pytest.approx(50.0, rel=0.03)
    assert report.latency_ms.p95 == pytest.approx(100.0, rel=0.03)
    assert report.latency_ms.max == 100.0
    # 13 lines over 10 s + 5 s of runs; the two hours between the runs do not count.
    assert report.rate_from == "runs"
    assert report.run_seconds == 15.0
    assert report.rows_per_s == pytest.approx(13 / 15, abs=0.001)


def test_rate_without_metadata_comes_from_the_lines(tmp_path: Path) -> None:
    """Without a meta file, rows a second is lines over first to last finished_at."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(
        line(i, finished_at=f"2026-11-23T10:00:{i * 2:02d}.000Z") for i in range(1, 11)
    ))
    report = scan_results(path, None).report()
    assert report.rate_from == "lines"
    assert report.run_seconds == 18.0
    assert report.rows_per_s == pytest.approx(10 / 18, abs=0.001)


def test_a_killed_run_ends_at_its_last_line(tmp_path: Path) -> None:
    """A run with no ended_at (killed) lasts until its last finished line."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(
        line(i, finished_at=f"2026-11-23T10:00:{i:02d}.000Z") for i in range(1, 5)
    ))
    meta = {"runs": [{"started_at": "2026-11-23T10:00:00.000Z"}]}
    report = scan_results(path, meta).report()
    assert (report.run_seconds, report.rows_per_s) == (4.0, 1.0)


def test_percentiles_of_many_rows_are_within_two_percent(tmp_path: Path) -> None:
    """1..2000 ms: p50 and p95 within the histogram's 2 %, max exact; no-request rows left out."""
    path = tmp_path / "r.jsonl"
    body = [line(i, elapsed_ms=float(i)) for i in range(1, 2001)]
    body += [line(2000 + i, status="invalid", attempts=0, elapsed_ms=0.0) for i in range(1, 500)]
    path.write_bytes(b"".join(body))
    lat = scan_results(path, None).report().latency_ms
    assert lat.p50 == pytest.approx(1000, rel=0.02)
    assert lat.p95 == pytest.approx(1900, rel=0.02)
    assert lat.max == 2000.0


def test_a_rows_time_is_split_into_the_servers_answer_and_the_wait(tmp_path: Path) -> None:
    """A fast server behind a rate limit: 2,000 ms a row of which 1,998 ms waiting."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(line(i, elapsed_ms=2000.0, wait_ms=1998.0)
                              for i in range(1, 101)))
    report = scan_results(path, None).report()
    assert report.latency_ms.p50 == pytest.approx(2000, rel=0.02)
    assert report.server_ms.p50 == pytest.approx(2, rel=0.05)
    assert report.waiting_ms.p50 == pytest.approx(1998, rel=0.02)
    done = CliRunner().invoke(report_command, [str(path)])
    assert "the server's answer p50 2 ms" in done.output
    # Files of versions that did not record the wait: no split, the whole time as before.
    old = tmp_path / "old.jsonl"
    old.write_bytes(b"".join(line(i, elapsed_ms=5.0) for i in range(1, 11)))
    assert scan_results(old, None).report().server_ms.p50 is None


def test_error_messages_are_capped_with_an_other_bucket(tmp_path: Path) -> None:
    """Past MAX_MESSAGES distinct messages, the rest share one bucket; examples are capped."""
    path = tmp_path / "r.jsonl"
    body = [line(i, status="failed", error="the same") for i in range(1, 51)]
    body += [line(50 + i, status="failed", error=f"error number {i}")
             for i in range(1, MAX_MESSAGES + 6)]
    path.write_bytes(b"".join(body))
    errors = scan_results(path, None).report().errors
    assert errors[0].message == "the same" and errors[0].count == 50
    assert errors[0].rows == tuple(range(1, MAX_EXAMPLE_ROWS + 1))
    # "the same" and the first 999 numbered messages by name, the last 6 in one bucket.
    assert len(errors) == MAX_MESSAGES + 1
    assert errors[-1].message == OTHER_ERRORS
    assert errors[-1].count == 6
    assert errors[-1].rows[0] == 50 + MAX_MESSAGES


def test_memory_stays_bounded_by_rows_not_lines(tmp_path: Path) -> None:
    """50,000 rows: the report's peak allocation stays near 13 bytes a row, not a line's worth."""
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        for start in range(1, 50_001, 10_000):
            f.write(b"".join(
                line(i, status="failed" if i % 7 == 0 else "ok",
                     error=f"HTTP 503 for {i % 50}" if i % 7 == 0 else None,
                     elapsed_ms=float(i % 900))
                for i in range(start, start + 10_000)
            ))
    tracemalloc.start()
    try:
        report = scan_results(path, None).report()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.rows == 50_000
    assert report.counts["failed"] == 50_000 // 7
    # 13 bytes a row at rest, doubled for a moment while the arrays grow, plus the
    # histogram and one line; a dict a row would take some 30 MB.
    assert peak < 3_000_000


# -- the command ------------------------------------------------------------------------------


def test_json_has_exactly_the_documented_shape(mixed: Path) -> None:
    """--json prints one object with counts, by_op, rows_per_s, latency_ms, retries, errors,
    and (issue 15, ops) not_reached, runs, verdict."""
    done = invoke("report", str(mixed), "--json")
    assert done.exit_code == 0, done.output
    data = orjson.loads(done.stdout)
    assert list(data) == ["counts", "by_op", "rows_per_s", "latency_ms", "server_ms", "waiting_ms",
                          "retries", "errors",
                          "not_reached", "runs", "verdict"]
    assert data["counts"] == {
        "ok": 4, "noop": 1, "failed": 2, "invalid": 2, "pending": 1, "stale": 0}
    assert set(data["by_op"]) == {"remove", "move", "move_all", "add", "other"}
    assert all(set(v) == set(data["counts"]) for v in data["by_op"].values())
    assert set(data["latency_ms"]) == {"p50", "p95", "max"}
    assert data["latency_ms"]["max"] == 100.0
    assert data["retries"] == 8
    assert data["rows_per_s"] == pytest.approx(0.867, abs=0.001)
    assert all(list(e) == ["message", "count", "rows"] for e in data["errors"])
    assert data["errors"][1] == {"message": "The group could not be found.", "count": 1,
                                 "rows": [5]}
    assert "unreadable" in done.stderr  # the torn line is told, on stderr


def test_text_output_shows_counts_errors_and_figures(mixed: Path) -> None:
    """The default text output has the status table, the errors and the speed figures."""
    done = invoke("report", str(mixed))
    assert done.exit_code == 0, done.output
    text = done.stdout
    for word in ("ok", "noop", "failed", "invalid", "pending", "by op", "move_all",
                 "HTTP 500: boom", "retries 8", "rows/s", "latency p50"):
        assert word in text, word


def test_failed_csv_is_a_ready_input_of_the_failed_rows(mixed: Path, tmp_path: Path) -> None:
    """--failed-csv writes the rows whose last outcome failed, readable as valid input."""
    out = tmp_path / "failed.csv"
    done = invoke("report", str(mixed), "--failed-csv", str(out))
    assert done.exit_code == 0, done.output
    assert out.read_text().splitlines() == [
        "op,group,member,to_group",
        f"remove,{DEAD},{member(5)},",
        f"remove,{DEAD},{member(9)},",
    ]
    rows = list(read_rows(out, fmt="csv", kind=TargetKind.DOCSPACE))
    assert all(isinstance(r, Row) for r in rows) and len(rows) == 2
    assert "wrote 2 failed rows" in done.stdout


class _Tags(HTMLParser):
    """Collects the tag structure and every src/href of a page."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "col", "area", "base",
                      "source", "wbr", "line", "path"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.unbalanced: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID and (not self.stack or self.stack[-1] != tag):
            return
        if not self.stack or self.stack.pop() != tag:
            self.unbalanced.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_one_self_contained_page_with_a_chart(mixed: Path, tmp_path: Path) -> None:
    """--html writes balanced HTML with the counts, the errors and an inline SVG, no links."""
    out = tmp_path / "report.html"
    done = invoke("report", str(mixed), "--html", str(out))
    assert done.exit_code == 0, done.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert parser.unbalanced == [] and parser.stack == []
    for tag in ("html", "head", "title", "style", "body", "table", "svg", "path"):
        assert tag in parser.seen, tag
    assert "script" not in parser.seen
    assert not [link for link in parser.links if link.startswith(("http:", "https:", "//"))]
    assert parser.links == []
    cells = [t.strip() for t in parser.text if t.strip()]
    for status, n in (("ok", "4"), ("noop", "1"), ("failed", "2"), ("invalid", "2"),
                      ("pending", "1")):
        at = cells.index(status)
        assert cells[at + 1] == n, status
    assert "The group could not be found." in cells
    assert "paused 1 h 59 min" in page  # the resume two hours later is marked, not drawn


def test_empty_results_report_zeros(tmp_path: Path) -> None:
    """An empty results file with its metadata (a run that finished no row) reports zeros
    and exits 0; without metadata it is not a results file (tests/test_report_ops.py)."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"")
    (tmp_path / "r.meta.json").write_bytes(b'{"runs": []}')
    done = invoke("report", str(path), "--json", "--html", str(tmp_path / "r.html"))
    assert done.exit_code == 0, done.output
    data = orjson.loads(done.stdout)
    assert data["counts"] == dict.fromkeys(
        ("ok", "noop", "failed", "invalid", "pending", "stale"), 0)
    assert data["rows_per_s"] is None and data["latency_ms"]["p50"] is None
    assert "<svg" in (tmp_path / "r.html").read_text()


def test_missing_or_unreadable_results_exit_2_naming_the_file(tmp_path: Path) -> None:
    """A missing file or a folder given as the results file: exit 2 and the path named."""
    missing = tmp_path / "nope.jsonl"
    done = invoke("report", str(missing))
    assert done.exit_code == 2
    assert str(missing) in done.stderr and "cannot read" in done.stderr
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    done = invoke("report", str(folder))
    assert done.exit_code == 2 and str(folder) in done.stderr


def test_help_explains_every_option() -> None:
    """report --help and undo --help describe every option."""
    for command in (report_command, undo_command):
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.name}"
        done = invoke(str(command.name), "--help")
        assert done.exit_code == 0
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.opts[-1] in done.stdout
    assert "--failed-csv" in invoke("report", "--help").stdout
    assert "--force" in invoke("undo", "--help").stdout


# -- one reader, one list of statuses ---------------------------------------------------------


def test_report_and_resume_agree_on_a_line_cut_after_its_status(tmp_path: Path) -> None:
    """Issue 10.5: the last line cut just after `"status":"ok"` is torn for both: report
    counts it unreadable and not ok, resume does not take its row as finished."""
    whole = line(3)
    cut = whole[: whole.index(b'"status":"ok"') + len(b'"status":"ok"')]
    path = tmp_path / "r.jsonl"
    path.write_bytes(line(1) + line(2, status="failed") + cut)
    report = scan_results(path, None).report()
    done = FinishedRows.from_results(path, input_rows=10)
    assert report.counts["ok"] == 1 and report.rows == 2 and report.unreadable == 1
    assert [r for r in range(1, 4) if r in done] == [1]
    assert done.torn == report.unreadable


def test_statuses_are_the_models() -> None:
    """The report counts every status `Status` knows, in its order, and no other."""
    assert tuple(s.value for s in Status) == STATUSES


def test_a_row_past_the_input_is_skipped_by_report_and_undo(tmp_path: Path) -> None:
    """Issue 10.6: with the metadata's max_row, a line naming a row past it is unreadable for
    report and undo alike; without metadata a huge row number costs no memory either."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(line(1) + line(99_999_999_999) + line(7))
    (tmp_path / "r.meta.json").write_bytes(b'{"max_row": 5}')
    report = scan_results(path, read_meta(path)).report()
    assert (report.rows, report.unreadable) == (1, 2)
    done = invoke("undo", str(path), "-o", str(tmp_path / "u.csv"))
    assert done.exit_code == 0, done.output
    assert "skipped 2 unreadable" in done.stderr
    (tmp_path / "r.meta.json").unlink()
    tracemalloc.start()
    try:
        report = scan_results(path, None).report()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (report.rows, report.unreadable) == (2, 1) and peak < 1 << 20


@pytest.mark.parametrize(("content", "problem"), [
    (b"op,group,member\nremove,g,m\n", "not a results file"),
    (b'[job]\nname = "x"\n', "not a results file"),
    (b"", "is empty"),
    (b"\x00\x01binary", "not a results file (binary data)"),
])
@pytest.mark.parametrize("command", ["report", "undo"])
def test_a_file_that_is_not_results_exits_2(tmp_path: Path, content: bytes, problem: str,
                                            command: str) -> None:
    """Issue 15: report (and undo) on a CSV, a job file, an empty file or a binary: exit 2 and
    one line naming the file, not an all-zero table."""
    path = tmp_path / "thing.jsonl"
    path.write_bytes(content)
    args = [command, str(path)] + (["-o", str(tmp_path / "u.csv")] if command == "undo" else [])
    done = invoke(*args)
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bulkgroups: {path}: "), done.stderr
    assert problem in lines[0] and done.stdout == ""
    assert not (tmp_path / "u.csv").exists()
