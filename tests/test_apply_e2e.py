"""Plan, approve, apply against the sandbox over real HTTP: exactly the planned changes that
still hold are sent, drifted rows end `stale`, approval and the group guard hold a run
before any write, and a killed apply resumes to one final outcome per row."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulkgroups.sandbox import Sandbox, make_state
from tests.support import AX_TOKEN, DS_TOKEN, finish, last_outcomes, run_cli, start_cli, write_job

AUTH = {"Authorization": f"Bearer {DS_TOKEN}"}


def groups(sb: Sandbox) -> dict[str, set[str]]:
    return {g: set(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


def plain_users(sb: Sandbox) -> list[str]:
    users = sb.dump()["docspace"]["users"]
    return sorted(u for u, v in users.items() if v.get("kind", "user") == "user")


async def drift(sb: Sandbox, method: str, group: str, members: list[str]) -> None:
    """Someone else's change, through the API, between the plan and the apply."""
    async with aiohttp.ClientSession() as s, s.request(
        method, f"{sb.base_url}/api/2.0/group/{group}/members", headers=AUTH,
        json={"members": members},
    ) as r:
        assert r.status == 200, await r.text()


def sent_members(sb: Sandbox) -> set[str]:
    return {m for e in sb.log if e.method != "GET" for m in e.members}


def writes(sb: Sandbox) -> int:
    return sum(e.method != "GET" and e.api == "docspace" for e in sb.log)


async def test_apply_sends_only_the_changes_that_still_hold(tmp_path: Path) -> None:
    state = make_state(docspace_groups=2, docspace_members=30, guests=0, terminated=0)
    async with Sandbox(state) as sb:
        g0, g1 = list(groups(sb))
        before = groups(sb)
        members = sorted(before[g0] - before[g1])
        outsiders = [u for u in plain_users(sb) if u not in before[g0]]
        removes, adds = members[:6], outsiders[:4]
        rows = ([{"op": "remove", "group": g0, "member": m} for m in removes]
                + [{"op": "add", "group": g0, "member": u} for u in adds]
                + [{"op": "remove", "group": g0, "member": outsiders[5]}]  # already
                + [{"op": "remove", "group": g0, "member": "not-a-guid"}]  # invalid
                + [{"op": "remove", "group": g0, "member": removes[3]}])  # a duplicate
        job = write_job(tmp_path, sb, rows=rows)
        plan = tmp_path / "plan.jsonl"
        done = await run_cli("plan", str(job), "-o", str(plan))
        assert done.code == 1, done.stderr  # the invalid row
        assert (plan.stat().st_mode & 0o777) == 0o600
        assert writes(sb) == 0
        shown = await run_cli("plan", "--show", str(plan))
        assert shown.code == 0 and "remove " + removes[0] in shown.stdout
        assert f"bulkgroups apply {plan}" in shown.stdout

        # Drift: someone else removes two planned members and adds one planned newcomer.
        await drift(sb, "DELETE", g0, removes[:2])
        await drift(sb, "PUT", g0, adds[:1])
        sb.clear_log()

        done = await run_cli("apply", str(plan))
        assert done.code == 1, done.stderr  # stale and invalid rows
        out = last_outcomes(tmp_path / "results.jsonl")
        by_member = {o["member"]: o for o in out.values()}
        assert {by_member[m]["status"] for m in removes[:2]} == {"stale"}
        assert "already left" in by_member[removes[0]]["error"]
        assert by_member[adds[0]]["status"] == "stale"
        assert "joined" in by_member[adds[0]]["error"]
        assert {by_member[m]["status"] for m in removes[2:] + adds[1:]} == {"ok"}
        assert by_member[outsiders[5]]["status"] == "noop"
        assert by_member["not-a-guid"]["status"] == "invalid"
        # Every input row has its outcome, the duplicate too (a noop, as a run gives it).
        assert len(out) == len(rows)
        duplicate = out[len(rows)]
        assert (duplicate["status"], duplicate["member"]) == ("noop", removes[3])
        assert "duplicate" in duplicate["error"]
        # The server saw exactly the undrifted changes, nothing else.
        assert sent_members(sb) == set(removes[2:] + adds[1:])
        assert groups(sb)[g0] == (before[g0] - set(removes)) | set(adds)

        # The results work like any run's: a resume has nothing left to send.
        sb.clear_log()
        again = await run_cli("resume", str(tmp_path / "results.jsonl"))
        assert again.code == 1, again.stderr
        assert writes(sb) == 0


async def test_apply_refuses_a_plan_whose_input_or_job_changed(tmp_path: Path) -> None:
    async with Sandbox(make_state(docspace_groups=1, docspace_members=5)) as sb:
        (g0,) = groups(sb)
        m = sorted(groups(sb)[g0])[0]
        job = write_job(tmp_path, sb, rows=[{"op": "remove", "group": g0, "member": m}])
        plan = tmp_path / "plan.jsonl"
        assert (await run_cli("plan", str(job), "-o", str(plan))).code == 0
        (tmp_path / "input.csv").write_text((tmp_path / "input.csv").read_text() + "\n")
        done = await run_cli("apply", str(plan))
        assert done.code == 2
        assert "changed since the plan was made" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        job.write_text(job.read_text().replace("rate = 1000", "rate = 999"))
        done = await run_cli("apply", str(plan))
        assert done.code == 2 and "job file" in done.stderr
        assert writes(sb) == 0
        broken = tmp_path / "broken.jsonl"
        broken.write_bytes(plan.read_bytes()[:-3])
        done = await run_cli("apply", str(broken))
        assert done.code == 2 and str(broken) in done.stderr and "Traceback" not in done.stderr


async def test_approval_holds_the_run_and_its_plan_applies(tmp_path: Path) -> None:
    async with Sandbox(make_state(docspace_groups=2, docspace_members=20)) as sb:
        g0, _ = list(groups(sb))
        before = groups(sb)
        ms = sorted(before[g0])[:3]
        job = write_job(tmp_path, sb, rows=[{"op": "remove", "group": g0, "member": m}
                                            for m in ms],
                        safety={"require_approval": True})
        done = await run_cli("run", str(job))
        assert done.code == 3, done.stderr
        assert writes(sb) == 0
        plan = tmp_path / "results.plan.jsonl"
        assert plan.exists() and f"bulkgroups apply {plan}" in done.stderr
        done = await run_cli("apply", str(plan))
        assert done.code == 0, done.stderr
        assert groups(sb)[g0] == before[g0] - set(ms)


async def test_group_guard_stops_before_any_write_and_lifts(tmp_path: Path) -> None:
    state = make_state(docspace_groups=1, docspace_members=100, guests=0, terminated=0)
    async with Sandbox(state) as sb:
        (g0,) = groups(sb)
        ms = sorted(groups(sb)[g0])
        assert len(ms) == 100
        rows = [{"op": "remove", "group": g0, "member": m} for m in ms[:80]]
        job = write_job(tmp_path, sb, rows=rows, safety={"max_group_removal": 0.5})
        done = await run_cli("run", str(job))
        assert done.code == 3, done.stderr
        assert "would remove 80 of 100 members (80%)" in done.stderr
        assert writes(sb) == 0
        plan_done = await run_cli("plan", str(job))
        assert plan_done.code == 3 and "group guard" in plan_done.stdout
        job.write_text(job.read_text().replace("max_group_removal = 0.5",
                                               "max_group_removal = 0.9"))
        (tmp_path / "results.jsonl").unlink(missing_ok=True)
        done = await run_cli("run", str(job))
        assert done.code == 0, done.stderr
        assert len(groups(sb)[g0]) == 20


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_signal_while_the_guard_reads_the_groups_exits_at_once(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """The group guard reads every group before the first write (seconds for many groups at
    a low rate), before the run's own handlers: a SIGTERM there was the default action (the
    process killed, no summary, no finish hook). Now: the documented exit, nothing sent."""
    state = make_state(docspace_groups=40, docspace_members=12, guests=0, terminated=0)
    async with Sandbox(state) as sb:
        before = groups(sb)
        rows = [{"op": "remove", "group": g, "member": sorted(ms)[0]} for g, ms in before.items()]
        job = write_job(tmp_path, sb, rows=rows, limits={"rate": 4, "concurrency": 2},
                        safety={"max_group_removal": 0.5})
        proc = await start_cli("run", str(job))
        await sb.wait_for_requests(3, timeout_s=30)
        proc.send_signal(sig)
        done = await finish(proc, timeout_s=10)
        assert done.code == code, (done.code, done.stderr)
        assert "interrupted while reading the groups" in done.stderr
        assert "nothing was sent" in done.stderr
        assert "Traceback" not in done.stderr
        assert writes(sb) == 0 and groups(sb) == before
        # `plan -o` reads the same way: the same exit, and no plan file, not half of one.
        sb.clear_log()
        proc = await start_cli("plan", str(job), "-o", str(tmp_path / "plan.jsonl"))
        await sb.wait_for_requests(3, timeout_s=30)
        proc.send_signal(sig)
        done = await finish(proc, timeout_s=10)
        assert done.code == code, (done.code, done.stderr)
        assert "interrupted: nothing was sent" in done.stderr
        assert "Aborted" not in done.stderr
        assert not [p.name for p in tmp_path.iterdir() if "plan" in p.name]


async def test_killed_apply_resumes_to_one_final_outcome_per_row(tmp_path: Path) -> None:
    state = make_state(docspace_groups=1, docspace_members=120, guests=0, terminated=0)
    async with Sandbox(state) as sb:
        (g0,) = groups(sb)
        ms = sorted(groups(sb)[g0])
        rows = [{"op": "remove", "group": g0, "member": m} for m in ms[:100]]
        job = write_job(tmp_path, sb, rows=rows, limits={"rate": 40, "concurrency": 2})
        plan = tmp_path / "plan.jsonl"
        assert (await run_cli("plan", str(job), "-o", str(plan))).code == 0
        sb.clear_log()
        proc = await start_cli("apply", str(plan), "--quiet")
        await sb.wait_for_requests(30)
        proc.send_signal(signal.SIGKILL)
        await finish(proc)
        done = await run_cli("resume", str(tmp_path / "results.jsonl"))
        assert done.code == 0, done.stderr
        out = last_outcomes(tmp_path / "results.jsonl")
        assert sorted(out) == list(range(1, 101))
        assert {o["status"] for o in out.values()} <= {"ok", "noop"}
        assert groups(sb)[g0] == set(ms[100:])




def ax_groups(sb: Sandbox) -> dict[str, set[str]]:
    objects = sb.dump()["adaxes"]["objects"]
    return {dn: set(o["members"]) for dn, o in objects.items() if o["type"] == "group"}


async def _undo_through_a_plan(tmp_path: Path, sb: Sandbox, kind: str, token: str) -> Any:
    """undo -o, then plan the undo file and apply the plan, as the README says."""
    undone = await run_cli("undo", str(tmp_path / "results.jsonl"), "-o",
                           str(tmp_path / "undo.csv"), token=token)
    assert undone.code == 0, undone.stderr
    folder = tmp_path / "undo"
    folder.mkdir()
    job = write_job(folder, sb, kind=kind, limits={"concurrency": 1})
    job.write_text(job.read_text().replace('path = "input.csv"',
                                           f'path = "{tmp_path / "undo.csv"}"'))
    plan = folder / "undo.plan.jsonl"
    planned = await run_cli("plan", str(job), "-o", str(plan), token=token)
    assert planned.code in (0, 1), planned.stderr
    applied = await run_cli("apply", str(plan), token=token)
    return undone, applied, last_outcomes(folder / "results.jsonl")


async def test_snapshot_undo_restores_docspace_and_says_what_it_cannot(tmp_path: Path) -> None:
    state = make_state(docspace_groups=3, docspace_members=24, guests=1, terminated=0)
    async with Sandbox(state) as sb:
        before = groups(sb)
        g0, g1, g2 = list(before)
        users = sb.dump()["docspace"]["users"]
        guest = next(u for u in before[g0] if users[u].get("kind") == "guest")
        only0 = sorted(m for m in before[g0] - before[g1] - before[g2] if m != guest)
        rows = ([{"op": "remove", "group": g0, "member": m} for m in [*only0[:3], guest]]
                + [{"op": "move", "group": g0, "member": m, "to_group": g1} for m in only0[3:5]]
                + [{"op": "move_all", "group": g2, "to_group": g1}])
        job = write_job(tmp_path, sb, rows=rows)
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        assert (tmp_path / "results.snapshot.jsonl.gz").exists()
        # Someone else puts one removed member back before the undo.
        await drift(sb, "PUT", g0, [only0[0]])
        sb.clear_log()
        undone, applied, out = await _undo_through_a_plan(tmp_path, sb, "docspace", DS_TOKEN)
        assert f"cannot put back {guest} in {g0}: a guest" in undone.stderr
        assert applied.code == 0, applied.stderr
        by_member = {(o["group"], o["member"]): o["status"] for o in out.values()}
        assert by_member[(g0, only0[0])] == "noop"  # changed meanwhile: left alone
        assert only0[0] not in sent_members(sb)
        assert groups(sb) == {g0: before[g0] - {guest}, g1: before[g1], g2: before[g2]}


async def test_snapshot_undo_restores_adaxes_exactly(tmp_path: Path) -> None:
    state = make_state(adaxes_groups=3, adaxes_members=12)
    async with Sandbox(state) as sb:
        before = ax_groups(sb)
        a, b, c = list(before)
        only_a = sorted(before[a] - before[b] - before[c])
        rows = ([{"op": "remove", "group": a, "member": m} for m in only_a[:2]]
                + [{"op": "move", "group": a, "member": only_a[2], "to_group": b}]
                + [{"op": "move_all", "group": c, "to_group": b}])
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows, fmt="jsonl")
        done = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert done.code == 0, done.stderr
        assert ax_groups(sb) != before
        _, applied, _ = await _undo_through_a_plan(tmp_path, sb, "adaxes", AX_TOKEN)
        assert applied.code == 0, applied.stderr
        assert ax_groups(sb) == before
