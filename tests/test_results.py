"""The results file and its metadata, and the latency tallies."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson

from bulkgroups.model import Outcome, Status
from bulkgroups.results.file import ResultsWriter, meta_path, read_meta, write_meta
from bulkgroups.results.stats import LatencyHistogram


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
