"""Crash safety, graceful stop, resume, the run lock and the safety rails: real processes,
real signals, the sandbox as the server."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkgroups.model import Status
from bulkgroups.sandbox import Faults, Limits, Sandbox, SandboxConfig, make_state
from tests.support import finish, last_outcomes, run_cli, start_cli, write_job

FINAL = {s.value for s in Status if s.is_final}
# The crash tests send a few thousand requests in seconds: DocSpace's minute window is not
# what they are about (test_pacing covers it), so it is off.
NO_LIMITS = SandboxConfig(limits=Limits.off())


def groups_of(sb: Sandbox) -> dict[str, set[str]]:
    return {g: set(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


def big_batch(sb: Sandbox) -> tuple[list[dict[str, str]], dict[str, set[str]]]:
    """About 2,000 rows (removals and moves) and the memberships they must leave."""
    before = groups_of(sb)
    g0, g1, g2 = list(before)
    moved = sorted(before[g1] - before[g2])[:600]
    rows = [{"op": "remove", "group": g0, "member": m} for m in sorted(before[g0])]
    rows += [{"op": "move", "group": g1, "member": m, "to_group": g2} for m in moved]
    expected = {g0: set(), g1: before[g1] - set(moved), g2: before[g2] | set(moved)}
    return rows, expected


def assert_one_final_outcome_per_row(results: Path, n_rows: int) -> None:
    lines = [orjson.loads(line) for line in results.read_bytes().splitlines()]
    finals: dict[int, int] = {}
    last: dict[int, dict[str, Any]] = {}
    for obj in lines:
        last[obj["row"]] = obj
        if obj["status"] in FINAL:
            finals[obj["row"]] = finals.get(obj["row"], 0) + 1
    assert sorted(last) == list(range(1, n_rows + 1))
    assert all(finals.get(r) == 1 for r in range(1, n_rows + 1))
    assert all(o["status"] in FINAL for o in last.values())


@pytest.mark.parametrize("kill_after", [150, 1000, 1800])
async def test_sigkill_then_resume_finishes_every_row_exactly_once(
    tmp_path: Path, kill_after: int
) -> None:
    """SIGKILL at several points, then resume: one final outcome per row, the exact state."""
    async with Sandbox(make_state(docspace_members=1000), config=NO_LIMITS) as sb:
        rows, expected = big_batch(sb)
        job = write_job(tmp_path, sb, rows=rows, limits={"rate": 1500, "concurrency": 12},
                        safety={"max_changes": 10_000})
        proc = await start_cli("run", str(job), "--quiet")
        await sb.wait_for_requests(kill_after, timeout_s=60)
        proc.send_signal(signal.SIGKILL)
        killed = await finish(proc)
        assert killed.code == -signal.SIGKILL
        results = tmp_path / "results.jsonl"
        assert len(last_outcomes(results)) < len(rows)
        done = await run_cli("resume", str(results), "--quiet")
        assert done.code == 0, done.stderr
        assert groups_of(sb) == expected
    assert_one_final_outcome_per_row(results, len(rows))


async def test_sigterm_stops_gracefully_and_resume_completes(tmp_path: Path) -> None:
    """SIGTERM mid-run: exit 143, no torn line, a resume hint; resume then finishes."""
    async with Sandbox(make_state(docspace_members=1000), config=NO_LIMITS) as sb:
        rows, expected = big_batch(sb)
        job = write_job(tmp_path, sb, rows=rows, limits={"rate": 400},
                        safety={"max_changes": 10_000})
        proc = await start_cli("run", str(job))
        await sb.wait_for_requests(300, timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        stopped = await finish(proc)
        assert stopped.code == 143, stopped.stderr
        assert "terminated (SIGTERM)" in stopped.stderr
        assert "bulkgroups resume" in stopped.stdout
        results = tmp_path / "results.jsonl"
        raw = results.read_bytes()
        assert raw.endswith(b"\n")
        partial = [orjson.loads(line) for line in raw.splitlines()]
        assert 0 < len(partial) < len(rows)
        done = await run_cli("resume", str(results), "--quiet")
        assert done.code == 0, done.stderr
        assert groups_of(sb) == expected
    assert_one_final_outcome_per_row(results, len(rows))
    meta = orjson.loads((tmp_path / "results.meta.json").read_bytes())
    assert [r["command"] for r in meta["runs"]] == ["run", "resume"]
    assert [r["exit"] for r in meta["runs"]] == [143, 0]


async def test_resume_refuses_a_changed_input_unless_forced(tmp_path: Path) -> None:
    """An input edited after the run is refused on resume (exit 2); --force goes on."""
    async with Sandbox(make_state()) as sb:
        g0 = next(iter(groups_of(sb)))
        members = sorted(groups_of(sb)[g0])
        missing = "00000000-0000-4000-8000-0000000000aa"
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:5]]
        rows.append({"op": "remove", "group": missing, "member": members[6]})
        job = write_job(tmp_path, sb, rows=rows)
        first = await run_cli("run", str(job), "--quiet")
        assert first.code == 1
        data = tmp_path / "input.csv"
        data.write_text(data.read_text() + f"remove,{g0},{members[7]},\n")
        results = tmp_path / "results.jsonl"
        refused = await run_cli("resume", str(results))
        assert refused.code == 2
        assert "changed since the run" in refused.stderr
        sent = len(sb.log)
        forced = await run_cli("resume", str(results), "--force", "--quiet")
        assert forced.code == 1  # the unknown group still fails
        assert len(sb.log) > sent
        assert members[7] not in groups_of(sb)[g0]


async def test_a_second_run_of_the_same_results_is_refused(tmp_path: Path) -> None:
    """While a run holds the lock, another run or resume of that file exits 3 naming the pid."""
    async with Sandbox(make_state(docspace_members=200)) as sb:
        g0 = next(iter(groups_of(sb)))
        rows = [{"op": "remove", "group": g0, "member": m} for m in sorted(groups_of(sb)[g0])]
        job = write_job(tmp_path, sb, rows=rows, limits={"rate": 20, "precheck": False})
        first = await start_cli("run", str(job), "--quiet")
        await sb.wait_for_requests(3, timeout_s=30)
        second = await run_cli("run", str(job))
        assert second.code == 3
        assert f"pid {first.pid}" in second.stderr
        again = await run_cli("resume", str(tmp_path / "results.jsonl"))
        assert again.code == 3
        first.send_signal(signal.SIGINT)
        assert (await finish(first)).code == 130


async def test_max_changes_refuses_before_any_request(tmp_path: Path) -> None:
    """Over the cap: exit 3 with the count and nothing changed; the groups are only read, to
    write the plan an operator reviews (issue 14), and the plan is there."""
    async with Sandbox(make_state()) as sb:
        g0 = next(iter(groups_of(sb)))
        rows = [{"op": "remove", "group": g0, "member": m} for m in sorted(groups_of(sb)[g0])[:12]]
        rows.append({"op": "remove", "group": g0, "member": "not-a-uuid"})
        job = write_job(tmp_path, sb, rows=rows, safety={"max_changes": 10})
        refused = await run_cli("run", str(job))
        assert refused.code == 3
        assert "12 rows" in refused.stderr and "max_changes cap of 10" in refused.stderr
        assert {e.method for e in sb.log} == {"GET"}
        assert (tmp_path / "results.plan.jsonl").exists()
        allowed = await run_cli("run", str(job), "--max-changes", "12", "--quiet",
                                "--results", str(tmp_path / "second.jsonl"))
        assert allowed.code == 1  # the bad row
        assert len(groups_of(sb)[g0]) == 50 - 12


async def test_protected_ids_are_never_sent(tmp_path: Path) -> None:
    """A protected member (any case) is never removed; its rows end invalid 'protected'."""
    async with Sandbox(make_state()) as sb:
        g0, g1 = list(groups_of(sb))[:2]
        members = sorted(groups_of(sb)[g0])
        boss = members[0]
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:6]]
        rows.append({"op": "move", "group": g0, "member": boss.upper(), "to_group": g1})
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False},
                        safety={"protected": [boss.upper()]})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 1
        assert boss in groups_of(sb)[g0]
        assert len([e for e in sb.log if e.method != "GET"]) == 5
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert [o["error"] for o in outcomes.values() if o["status"] == "invalid"] == [
        "protected", "protected"]


async def test_failure_ratio_aborts_a_run_against_a_failing_server(tmp_path: Path) -> None:
    """Every answer 503: the run stops on the failure ratio with exit 3, well before the end."""
    config = SandboxConfig(faults=Faults(error_503_ratio=1.0, retry_after_s=0.0))
    async with Sandbox(make_state(docspace_members=400), config=config) as sb:
        g0 = next(iter(groups_of(sb)))
        rows = [{"op": "remove", "group": g0, "member": m} for m in sorted(groups_of(sb)[g0])]
        job = write_job(tmp_path, sb, rows=rows, limits={"max_retries": 1, "precheck": False},
                        safety={"abort_min_rows": 30})
        done = await run_cli("run", str(job))
    assert done.code == 3
    assert "failure ratio exceeded" in done.stderr and "100%" in done.stderr
    finished = last_outcomes(tmp_path / "results.jsonl")
    assert 30 <= len(finished) < 100
    assert {o["status"] for o in finished.values()} == {"failed"}


async def test_overlapping_runs_of_a_nightly_job_are_refused(tmp_path: Path) -> None:
    """Each night writes its own file ({date}-{time}), yet a run that overlaps the previous
    one of the same job is refused with exit 3 by the job's lock."""
    async with Sandbox(make_state(docspace_members=200)) as sb:
        g0 = next(iter(groups_of(sb)))
        rows = [{"op": "remove", "group": g0, "member": m} for m in sorted(groups_of(sb)[g0])]
        job = write_job(tmp_path, sb, rows=rows, limits={"rate": 20, "precheck": False})
        job.write_text(job.read_text().replace(
            'results = "results.jsonl"', 'results = "nightly/{job}-{date}-{time}.jsonl"'))
        first = await start_cli("run", str(job), "--quiet")
        await sb.wait_for_requests(3, timeout_s=30)
        second = await run_cli("run", str(job))
        assert second.code == 3
        assert "job t" in second.stderr and f"pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
        assert (await finish(first)).code == 143
    assert len(list((tmp_path / "nightly").glob("t-*.jsonl"))) == 1


async def test_resume_skips_a_torn_last_line_and_says_so(tmp_path: Path) -> None:
    """A results file whose last line was cut short by a crash resumes: the torn line is
    skipped and reported, its row is sent again, and every row ends with one final outcome."""
    async with Sandbox(make_state()) as sb:
        g0 = next(iter(groups_of(sb)))
        members = sorted(groups_of(sb)[g0])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:6]]
        job = write_job(tmp_path, sb, rows=rows)
        assert (await run_cli("run", str(job), "--quiet")).code == 0
        results = tmp_path / "results.jsonl"
        lines = results.read_bytes().splitlines(keepends=True)
        results.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # the crash mid-write
        done = await run_cli("resume", str(results))
        assert done.code == 0, done.stderr
        assert "1 unreadable line(s)" in done.stderr
    outcomes = last_outcomes(results)
    assert sorted(outcomes) == list(range(1, 7))
    assert {o["status"] for o in outcomes.values()} <= {"ok", "noop"}
