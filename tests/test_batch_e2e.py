"""Batches that fill, end to end: the real CLI against the sandbox, judged by its request log
and its final state (issue 13), and stops that are bounded (issue 10, items 4 and 9)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkgroups.sandbox import Faults, Limits, Sandbox, SandboxConfig, make_state
from bulkgroups.sandbox.log import max_in_window, max_overlap
from tests.support import finish, last_outcomes, run_cli, start_cli, write_job
from tests.test_resilience_e2e import assert_one_final_outcome_per_row, groups_of

NO_LIMITS = SandboxConfig(limits=Limits.off())


def shuffled_removals(sb: Sandbox, groups: int, per_group: int) -> tuple[list[dict[str, str]],
                                                                         dict[str, set[str]]]:
    """`per_group` removals from each of `groups` groups, shuffled (an export sorted by user),
    and the memberships they must leave."""
    before = groups_of(sb)
    users = sb.dump()["docspace"]["users"]
    rows = []
    expected = dict(before)
    for g in list(before)[:groups]:
        # Listed users only: a terminated member is hidden from reads, so precheck (rightly)
        # cannot see it; that is the adapter's subject, not batching's.
        listed = sorted(m for m in before[g] if users.get(m, {}).get("kind", "user") == "user")
        gone = listed[:per_group]
        rows += [{"op": "remove", "group": g, "member": m} for m in gone]
        expected[g] = before[g] - set(gone)
    random.Random(7).shuffle(rows)
    return rows, expected


async def test_shuffled_input_under_a_rate_limit_gives_full_batches(tmp_path: Path) -> None:
    """800 shuffled removals over 4 groups at rate 8: almost every request carries 50 rows
    (16 full requests would do it all); no one-second window over the rate, never more than
    `concurrency` in flight; the exact state."""
    async with Sandbox(make_state(docspace_groups=4, docspace_members=250),
                       config=NO_LIMITS) as sb:
        rows, expected = shuffled_removals(sb, 4, 200)
        job = write_job(tmp_path, sb, rows=rows, limits={
            "rate": 8, "concurrency": 3, "batch_size": 50, "precheck": False})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        deletes = [e for e in sb.log if e.method == "DELETE"]
        assert groups_of(sb) == expected
    assert len(deletes) <= 20, len(deletes)  # 16 if every one is full; once 800 (issue 13)
    # The first `concurrency` requests each open a connection, whose set-up delays their start
    # at the server by an amount a loaded machine does not bound; from then on, no second of
    # the server's clock holds more than `rate` starts.
    starts = sorted(e.start for e in sb.log)
    assert max_in_window(starts[3:], 1.0) <= 8
    assert max_in_window(starts, 3.0) <= 3 * 8
    assert max_overlap((e.start, e.end) for e in sb.log) <= 3
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert len(outcomes) == 800 and {o["status"] for o in outcomes.values()} == {"ok"}
    # The split of a row's time: it waited for its batch's slot, the server answered fast.
    assert all(0 <= o["wait_ms"] <= o["elapsed_ms"] for o in outcomes.values())
    assert sum(o["wait_ms"] for o in outcomes.values()) > 0.5 * sum(
        o["elapsed_ms"] for o in outcomes.values())


async def test_a_move_batch_never_removes_a_member_whose_add_was_refused(
    tmp_path: Path,
) -> None:
    """Moves between two groups go as add-lists then remove-lists; guests and terminated
    members (whom DocSpace's add skips) stay in the source, their rows fail; the rest moved."""
    state = make_state(docspace_groups=3, docspace_members=120, guests=6, terminated=4)
    async with Sandbox(state, config=NO_LIMITS) as sb:
        before = groups_of(sb)
        g0, g1, _ = list(before)
        users = state["docspace"]["users"]
        movers = sorted(before[g0] - before[g1])
        skipped = {m for m in movers if users[m]["kind"] in ("guest", "terminated")}
        assert len(skipped) == 10
        rows = [{"op": "move", "group": g0, "member": m, "to_group": g1} for m in movers]
        random.Random(3).shuffle(rows)
        job = write_job(tmp_path, sb, rows=rows, limits={
            "rate": 10, "concurrency": 2, "batch_size": 100, "precheck": False})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 1, done.stderr  # the skipped members' rows failed
        after = groups_of(sb)
        writes = [e for e in sb.log if e.method != "GET"]
    moved = set(movers) - skipped
    assert skipped <= after[g0] and not skipped & after[g1]  # never in neither group
    assert not moved & after[g0] and moved <= after[g1]
    assert len(writes) <= 6  # ~110 moves: 2 add-lists and 2 remove-lists, a little slack
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    failed = {o["member"] for o in outcomes.values() if o["status"] == "failed"}
    assert failed == skipped


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_a_stop_with_full_batches_in_flight_then_resume_is_exact(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Full batches out (slow answers) and more waiting when the signal comes; a resume
    finishes: every row one final outcome, the exact state."""
    config = SandboxConfig(limits=Limits.off(), faults=Faults(latency_ms=400))
    async with Sandbox(make_state(docspace_groups=5, docspace_members=300), config=config) as sb:
        rows, expected = shuffled_removals(sb, 5, 240)
        job = write_job(tmp_path, sb, rows=rows, limits={
            "rate": 6, "concurrency": 3, "batch_size": 40, "timeout_s": 5,
            "precheck": False}, safety={"max_changes": 10_000})
        proc = await start_cli("run", str(job), "--quiet")
        await sb.wait_for_requests(3, timeout_s=60)
        assert sb.in_flight >= 1
        proc.send_signal(sig)
        stopped = await finish(proc)
        assert stopped.code == (143 if sig is signal.SIGTERM else -signal.SIGKILL), stopped.stderr
        results = tmp_path / "results.jsonl"
        partial = last_outcomes(results)
        assert 0 < len(partial) < len(rows)
        done = await run_cli("resume", str(results), "--quiet")
        assert done.code == 0, done.stderr
        assert groups_of(sb) == expected
    assert_one_final_outcome_per_row(results, len(rows))


async def test_sigterm_during_a_long_retry_after_exits_within_timeout_plus_a_second(
    tmp_path: Path,
) -> None:
    """Every answer is 429 with Retry-After 600: SIGTERM ends the run within timeout_s + 1 s
    (measured from the signal, 1.5 s margin for process exit on a loaded machine)."""
    config = SandboxConfig(limits=Limits.off(),
                           faults=Faults(ratelimit_429_ratio=1.0, retry_after_s=600))
    async with Sandbox(make_state(), config=config) as sb:
        rows, _ = shuffled_removals(sb, 2, 20)
        job = write_job(tmp_path, sb, rows=rows, limits={"timeout_s": 2, "batch_size": 10})
        proc = await start_cli("run", str(job), "--quiet")
        await sb.wait_for_requests(1, timeout_s=30)
        signalled = time.monotonic()  # the sandbox logs time.monotonic() too
        proc.send_signal(signal.SIGTERM)
        stopped = await finish(proc, timeout_s=30)
        took = time.monotonic() - signalled
        assert stopped.code == 143, stopped.stderr
        # Nothing started once the child had the signal (0.5 s for its delivery on a loaded
        # machine): the pause was not waited out, no attempt came after it.
        assert all(e.start < signalled + 0.5 for e in sb.log)
    assert took < 2 + 1 + 1.5, took
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert all(o["status"] != "ok" for o in outcomes.values())


async def test_sigterm_with_a_row_mid_retries_exits_within_timeout_plus_a_second(
    tmp_path: Path,
) -> None:
    """Each answer is a 503 with Retry-After 1 (a row retries for seconds): SIGTERM after the
    first ones ends the run within timeout_s + 1 s; the rows unfinished have no outcome, and a
    resume against a healed server finishes them."""
    config = SandboxConfig(limits=Limits.off(),
                           faults=Faults(error_503_ratio=1.0, retry_after_s=1.0))
    async with Sandbox(make_state(), config=config) as sb:
        rows, expected = shuffled_removals(sb, 1, 5)
        job = write_job(tmp_path, sb, rows=rows, limits={"timeout_s": 2, "max_retries": 8})
        proc = await start_cli("run", str(job), "--quiet")
        await sb.wait_for_requests(6, timeout_s=30)  # every row on its second attempt
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stopped = await finish(proc, timeout_s=30)
        took = time.monotonic() - signalled
        assert stopped.code == 143, stopped.stderr
        results = tmp_path / "results.jsonl"
        assert last_outcomes(results) == {}
        sb.config.faults = Faults()
        done = await run_cli("resume", str(results), "--quiet")
        assert done.code == 0, done.stderr
        assert groups_of(sb) == expected
    assert took < 2 + 1 + 1.5, took
    assert_one_final_outcome_per_row(results, len(rows))


# -- a full disk (issue 10, item 4) -------------------------------------------------------------


def _mount_tmpfs(where: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                   check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 KB tmpfs (needs root and mount); grown with `mount -o remount`."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a tmpfs needs root and mount(8)")
    try:
        _mount_tmpfs(where, "200k")
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


@pytest.mark.timeout(720)
@pytest.mark.parametrize(("groups", "per_group", "batch", "concurrency"),
                         [(5, 200, 1, 10), (10, 1000, 1, 10), (10, 1000, 20, 4)])
async def test_a_full_disk_stops_the_run_at_once_and_resume_finishes(
    tmp_path: Path, small_disk: Path, groups: int, per_group: int, batch: int, concurrency: int
) -> None:
    """Results on a 200 KB tmpfs (1,000 and 10,000 rows): exit 3 promptly, saying so; no
    request beyond the rows whose outcomes were written and those in flight; after making room,
    resume gives every row one final outcome, and undo's input reverses every change."""
    async with Sandbox(make_state(docspace_groups=groups, docspace_members=per_group + 10),
                       config=NO_LIMITS) as sb:
        rows, expected = shuffled_removals(sb, groups, per_group)
        job = write_job(tmp_path, sb, rows=rows, limits={
            "rate": 2000, "concurrency": concurrency, "batch_size": batch},
            safety={"max_changes": 100_000})
        results = small_disk / "results.jsonl"
        started = time.monotonic()
        done = await run_cli("run", str(job), "--results", str(results), timeout_s=60)
        took = time.monotonic() - started
        assert done.code == 3, done.stderr
        assert "cannot write the results: disk full" in done.stderr
        assert took < 30
        written = last_outcomes(results)
        assert 0 < len(written) < len(rows)
        deletes = [e for e in sb.log if e.method == "DELETE"]
        # Every request carried at least one row whose outcome is written, but for the at
        # most `concurrency` out at the stop (whose outcomes the reserve's room took too).
        bound = len(written) if batch > 1 else len(written) + concurrency
        assert len(deletes) <= bound, (len(deletes), len(written))
        subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
        # 10,000 rows against a sandbox served by this very process: on a loaded shared
        # machine that takes minutes, not the one it takes alone.
        resumed = await run_cli("resume", str(results), "--quiet", timeout_s=400)
        assert resumed.code == 0, resumed.stderr
        assert groups_of(sb) == expected
        assert_one_final_outcome_per_row(results, len(rows))
        # undo sees every change: one reversing row for each member removed.
        back = tmp_path / "undo.csv"
        u = await run_cli("undo", str(results), "-o", str(back), timeout_s=180)
        assert u.code == 0, u.stderr
        undone = {tuple(line.split(",")[1:3]) for line in back.read_text().splitlines()[1:]}
        assert undone == {(r["group"], r["member"]) for r in rows}
