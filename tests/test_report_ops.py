"""`bulkgroups report` as an operator meets it the morning after: several files at once, a
file that is not results, how each run ended, the HTML page (mode 600, verdict first, failed
rows by id, groups, a chart that means something for a short run), rendered in Chromium."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from bulkgroups.cli.main import cli
from bulkgroups.results.html import FAILED_SHOWN

G1 = "3f1c2a9e-8b1d-4c5e-9a7f-1b2c3d4e5f60"
G2 = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def member(i: int) -> str:
    return f"5e0c7a1b-2d3e-4f50-8a6b-7c8d9e0f{i:04d}"


def write_results(folder: Path, name: str, lines: list[dict[str, Any]],
                  runs: list[dict[str, Any]]) -> Path:
    path = folder / f"{name}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    meta = {"job": str(folder / f"{name}.toml"), "job_name": name,
            "input": str(folder / "in.csv"),
            "target": {"kind": "docspace", "base_url": "https://portal.example.com"},
            "runs": runs}
    (folder / f"{name}.meta.json").write_bytes(orjson.dumps(meta))
    return path


def outcome(row: int, status: str, *, ms: int, group: str = G1,
            error: str | None = None) -> dict[str, Any]:
    return {"row": row, "line": row + 1, "key": "k", "op": "remove", "group": group,
            "member": member(row), "to_group": "", "status": status,
            "http_status": 404 if status == "failed" else 200, "attempts": 1,
            "error": error, "elapsed_ms": 5.0,
            "finished_at": f"2026-11-23T02:00:0{ms // 1000}.{ms % 1000:03d}Z"}


@pytest.fixture
def stopped(tmp_path: Path) -> Path:
    """A 3-second run that failed 120 rows and was refused before 30 of 250 rows."""
    lines = []
    for row in range(1, 221):
        status = "failed" if row % 2 == 0 and row <= 240 else "ok"
        lines.append(outcome(row, status, ms=row * 13, group=G1 if row % 3 else G2,
                             error="The group could not be found." if status == "failed"
                             else None))
    runs = [{"command": "run", "started_at": "2026-11-23T02:00:00.000Z", "pid": 1,
             "ended_at": "2026-11-23T02:00:03.000Z",
             "counts": {"ok": 110, "failed": 110}, "exit": 3,
             "stopped": "credentials refused", "stop_detail": "401 Unauthorized",
             "not_reached": 30, "already": 0}]
    return write_results(tmp_path, "night", lines, runs)


def test_several_results_files_are_reported_one_after_the_other(stopped: Path,
                                                                 tmp_path: Path) -> None:
    other = write_results(tmp_path, "other", [outcome(1, "ok", ms=10)],
                          [{"command": "run", "started_at": "2026-11-23T02:00:00.000Z",
                            "ended_at": "2026-11-23T02:00:01.000Z", "counts": {"ok": 1},
                            "exit": 0, "stopped": None, "not_reached": 0, "already": 0}])
    done = invoke("report", str(stopped), str(other))
    assert done.exit_code == 0, done.output
    assert f"{stopped}: rows by status" in done.output and f"{other}: rows by status" in done.output
    as_json = invoke("report", str(stopped), str(other), "--json")
    data = orjson.loads(as_json.stdout)
    assert [d["results"] for d in data] == [str(stopped), str(other)]
    assert data[0]["not_reached"] == 30 and data[1]["not_reached"] == 0
    assert data[1]["verdict"]["level"] == "ok"
    refused = invoke("report", str(stopped), str(other), "--html", str(tmp_path / "x.html"))
    assert refused.exit_code == 2 and "one results file" in refused.output


@pytest.mark.parametrize("content", [b"op,group,member\nremove,g,m\n",
                                     b'[job]\nname = "x"\n', b""])
def test_a_file_that_is_not_results_exits_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    done = invoke("report", str(path))
    assert done.exit_code == 2, done.output
    assert str(path) in done.output
    # An empty file is said to be empty; anything else is not a results file.
    assert ("is empty" if not content else "not a results file") in done.output


def test_report_says_how_the_run_ended_and_what_was_not_reached(stopped: Path) -> None:
    done = invoke("report", str(stopped))
    assert done.exit_code == 0, done.output
    text = done.output
    assert "not reached" in text and "30" in text and "250" in text  # input rows
    assert "refused or aborted: credentials refused" in " ".join(text.split())
    assert f"next: bulkgroups resume {stopped}" in text


def test_html_leads_with_the_verdict_and_lists_failed_rows(stopped: Path,
                                                           tmp_path: Path) -> None:
    page_path = tmp_path / "report.html"
    old = os.umask(0o022)
    try:
        done = invoke("report", str(stopped), "--html", str(page_path))
    finally:
        os.umask(old)
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(page_path.stat().st_mode) == 0o600
    page = page_path.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    body = page[page.index("<body>"):]
    # The verdict comes first, with the command to run.
    assert body.index('class="verdict bad"') < body.index("<h2>")
    assert f"bulkgroups resume {stopped}" in body[:body.index("<h2>")]
    assert "https://portal.example.com" in page and "night" in page
    assert "credentials refused" in page and "401 Unauthorized" in page
    # The first hundred failed rows with their ids and errors, and how many more.
    assert page.count(member(2)) >= 1 and member(2 * FAILED_SHOWN) in page
    assert member(2 * (FAILED_SHOWN + 1)) not in page
    assert "and 10 more failed rows" in page
    assert "The group could not be found." in page
    assert G2 in page[page.index("By group"):]
    # A 3-second run charts as a curve with many steps, axes labelled.
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert "outcomes written (cumulative)" in svg and "seconds since the first row" in svg
    path_d = svg[svg.index('d="M') + 3:].split('"')[0]
    assert path_d.count("L") > 100
    assert "+0.0 s" in svg and "+2.9 s" in svg  # tick labels along the time axis


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None,
                    reason="no Chromium on this machine (Debian: apt-get install chromium)")
def test_html_renders_in_headless_chromium(stopped: Path, tmp_path: Path) -> None:
    page_path = tmp_path / "report.html"
    assert invoke("report", str(stopped), "--html", str(page_path)).exit_code == 0
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp(dir=tmp_path)
    chromium = _chromium()
    assert chromium is not None
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
         "--window-size=1280,2000", page_path.as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(data) > 30_000  # a page with tables and a chart, not a blank one


def test_a_glob_of_results_skips_the_files_kept_beside_them(stopped: Path) -> None:
    """`report results/demo-*.jsonl` also names a selecting job's kept rows and a held plan:
    those are skipped, not refused as files that are not results."""
    stem = stopped.name.removesuffix(".jsonl")
    selected = stopped.with_name(f"{stem}.selected.jsonl")
    selected.write_bytes(b'{"op": "remove", "group": "g", "member": "m"}\n')
    plan = stopped.with_name(f"{stem}.plan.jsonl")
    plan.write_bytes(b'{"bulkgroups_plan": 1}\n')
    done = invoke("report", str(plan), str(stopped), str(selected))
    assert done.exit_code == 0, done.output
    assert done.output.count("rows by status") == 1
    alone = invoke("report", str(selected))
    assert alone.exit_code == 2 and "not a results file" in alone.output
