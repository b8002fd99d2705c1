"""What the adapters record is true, end to end against the sandbox (its state is the ground
truth): `plan` predicts what `run` does (an undo file of a move job; Adaxes business rules),
hidden terminated members are removed for real, SIDs of non-members are noops, a member list
is read whole."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bulkgroups.http.transport import Reply
from bulkgroups.model import Op, Result, Row, Status, TargetKind
from bulkgroups.sandbox import Sandbox, SandboxConfig, make_state
from bulkgroups.targets.connect import make_target
from bulkgroups.targets.docspace import HIDDEN_REMOVED, DocSpaceTarget
from tests.support import AX_TOKEN, DS_TOKEN, last_outcomes, run_cli, write_job
from tests.support import fast_transport as transport

_AS_PLAN = {"ok": "change", "pending": "change", "noop": "already", "failed": "fail",
            "invalid": "invalid"}


def ds_groups(sb: Sandbox) -> dict[str, set[str]]:
    return {g: set(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


def kinds(sb: Sandbox) -> dict[str, str]:
    return {u: v["kind"] for u, v in sb.dump()["docspace"]["users"].items()}


def run_counts(results: Path) -> Counter[str]:
    return Counter(_AS_PLAN[o["status"]] for o in last_outcomes(results).values())


def statuses(results: Path) -> Counter[str]:
    return Counter(o["status"] for o in last_outcomes(results).values())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def plan_json(job: Path, token: str) -> tuple[int, dict[str, Any]]:
    done = await run_cli("plan", str(job), "--json", token=token)
    assert done.code in (0, 1), done.stderr
    return done.code, orjson.loads(done.stdout)


def nonzero(counts: dict[str, int]) -> Counter[str]:
    return Counter({k: v for k, v in counts.items() if v})


async def test_plan_of_the_undo_file_of_a_move_job_matches_its_run(tmp_path: Path) -> None:
    """A move job runs; `undo` writes the moves back; `plan` of that file predicts exactly
    what running it does (every row a change, none failing), and the groups end as before."""
    state = make_state(docspace_groups=2, docspace_members=30, guests=0, terminated=0,
                       adaxes_groups=0)
    async with Sandbox(state) as sb:
        g0, g1 = list(ds_groups(sb))
        before = ds_groups(sb)
        movers = sorted(before[g0] - before[g1])
        assert len(movers) >= 10
        rows = [{"op": "move", "group": g0, "member": m, "to_group": g1} for m in movers]
        first = tmp_path / "first"
        first.mkdir()
        ran = await run_cli("run", str(write_job(first, sb, rows=rows)), "--quiet")
        assert ran.code == 0, ran.stderr
        assert statuses(first / "results.jsonl") == Counter({"ok": len(movers)})
        undo_file = tmp_path / "undo.csv"
        undone = await run_cli("undo", str(first / "results.jsonl"), "-o", str(undo_file))
        assert undone.code == 0, undone.stderr
        back = read_csv(undo_file)
        assert {r["op"] for r in back} == {"move"} and len(back) == len(movers)
        second = tmp_path / "second"
        second.mkdir()
        job = write_job(second, sb, rows=back)
        sb.clear_log()
        code, plan = await plan_json(job, DS_TOKEN)
        assert {e.method for e in sb.log} == {"GET"}
        assert code == 0
        assert plan["total"] == {"change": len(movers), "already": 0, "fail": 0, "invalid": 0}
        ran = await run_cli("run", str(job), "--quiet")
        assert ran.code == 0, ran.stderr
        assert run_counts(second / "results.jsonl") == nonzero(plan["total"])
        assert ds_groups(sb) == before


async def test_plan_of_the_undo_file_of_an_adaxes_move_job_matches_its_run(
    tmp_path: Path,
) -> None:
    """The same on Adaxes, members named by DN, GUID and SID (SIDs listed as arrays): plan
    of the undo file predicts every move back as a change and the run makes them all."""
    state = make_state(adaxes_groups=2, adaxes_members=20, docspace_groups=0, nested=False)
    objects = state["adaxes"]["objects"]
    g0, g1 = [dn for dn, o in objects.items() if o["type"] == "group"][:2]
    movers = [m for m in objects[g0]["members"]
              if m not in objects[g1]["members"] and objects[m]["type"] == "user"][:5]
    assert len(movers) == 5
    forms = ("dn", "guid", "sid")
    rows = [{"op": "move", "group": g0, "to_group": g1,
             "member": m if forms[i % 3] == "dn" else objects[m][forms[i % 3]]}
            for i, m in enumerate(movers)]
    async with Sandbox(state) as sb:
        before = sb.dump()["adaxes"]["objects"]
        first = tmp_path / "first"
        first.mkdir()
        ran = await run_cli("run", str(write_job(first, sb, kind="adaxes", rows=rows,
                                                 fmt="jsonl")), "--quiet", token=AX_TOKEN)
        assert ran.code == 0, ran.stderr
        undo_file = tmp_path / "undo.csv"
        undone = await run_cli("undo", str(first / "results.jsonl"), "-o", str(undo_file))
        assert undone.code == 0, undone.stderr
        back = read_csv(undo_file)
        second = tmp_path / "second"
        second.mkdir()
        job = write_job(second, sb, kind="adaxes", rows=back)
        code, plan = await plan_json(job, AX_TOKEN)
        assert code == 0
        assert plan["total"] == {"change": 5, "already": 0, "fail": 0, "invalid": 0}
        ran = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert ran.code == 0, ran.stderr
        assert run_counts(second / "results.jsonl") == nonzero(plan["total"])
        after = sb.dump()["adaxes"]["objects"]
        assert {g: sorted(after[g]["members"]) for g in (g0, g1)} == \
            {g: sorted(before[g]["members"]) for g in (g0, g1)}


async def test_adaxes_plan_says_what_business_rules_may_do(tmp_path: Path) -> None:
    """Adaxes groups with approval and denial rules: the read cannot know them, so plan
    counts those rows as change and says, for each, that they may end pending or failed;
    the run then ends them pending (approval) and failed (denied), and nothing else differs."""
    state = make_state(adaxes_groups=3, adaxes_members=6, docspace_groups=0, nested=False)
    objects = state["adaxes"]["objects"]
    plain, approval, denied = [dn for dn, o in objects.items() if o["type"] == "group"][:3]
    objects[approval]["approval"] = True
    objects[denied]["denied"] = True
    rows = [{"op": "remove", "group": g, "member": m}
            for g in (plain, approval, denied) for m in objects[g]["members"][:2]]
    outsider = next(dn for dn, o in objects.items()
                    if o["type"] == "user" and dn not in objects[plain]["members"])
    rows.append({"op": "remove", "group": plain, "member": outsider})
    async with Sandbox(state) as sb:
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows, fmt="jsonl")
        code, plan = await plan_json(job, AX_TOKEN)
        assert code == 0
        assert plan["total"] == {"change": 6, "already": 1, "fail": 0, "invalid": 0}
        from bulkgroups.targets.adaxes import BUSINESS_RULES
        assert plan["unsure"] == {BUSINESS_RULES: 6}
        text = await run_cli("plan", str(job), token=AX_TOKEN)
        assert "may end pending or failed" in text.stdout
        ran = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert ran.code == 1, ran.stderr
    got = statuses(tmp_path / "results.jsonl")
    assert got == Counter({"ok": 2, "pending": 2, "failed": 2, "noop": 1})
    # Every row whose outcome differs from the plain prediction was one plan flagged.
    assert got["ok"] + got["pending"] + got["failed"] == plan["unsure"][BUSINESS_RULES]


async def test_removing_terminated_members_leaves_them_gone(tmp_path: Path) -> None:
    """Terminated accounts are hidden from the member list yet members: a job removing them
    (precheck on) sends the removals, records ok, and the sandbox no longer holds them; a
    non-member in the same job is noop without a removal, because the terminated members'
    read proves it absent."""
    state = make_state(docspace_groups=2, docspace_members=8, terminated=3, adaxes_groups=0)
    async with Sandbox(state) as sb:
        g0 = next(iter(ds_groups(sb)))
        users = kinds(sb)
        gone = sorted(u for u in ds_groups(sb)[g0] if users[u] == "terminated")
        assert len(gone) == 3
        stranger = next(u for u in users if users[u] == "user"
                        and all(u not in m for m in ds_groups(sb).values()))
        rows = [{"op": "remove", "group": g0, "member": m} for m in (*gone, stranger)]
        job = write_job(tmp_path, sb, rows=rows)
        code, plan = await plan_json(job, DS_TOKEN)
        assert code == 0
        assert plan["total"] == {"change": 3, "already": 1, "fail": 0, "invalid": 0}
        sb.clear_log()
        ran = await run_cli("run", str(job), "--quiet")
        assert ran.code == 0, ran.stderr
        deletes = [e for e in sb.log if e.method == "DELETE"]
        assert len(deletes) == 3
        assert not set(gone) & ds_groups(sb)[g0]
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    ordered = sorted(outcomes.values(), key=lambda o: o["row"])
    assert [o["status"] for o in ordered] == ["ok", "ok", "ok", "noop"]
    assert [o["error"] for o in ordered[:3]] == [HIDDEN_REMOVED] * 3


async def test_terminated_removal_without_the_people_read_is_not_called_done(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """When the terminated members cannot be read (people search refused), a removal whose
    member is not listed is still sent (the membership ends exact), but recorded failed
    with why: neither ok nor noop would be proven."""
    state = make_state(docspace_groups=1, docspace_members=6, terminated=1, guests=0,
                       adaxes_groups=0)
    async with Sandbox(state) as sb:
        g0 = next(iter(ds_groups(sb)))
        users = kinds(sb)
        [gone] = [u for u in ds_groups(sb)[g0] if users[u] == "terminated"]
        target = NoPeopleSearch(transport(sb, client), precheck=True)
        result = await target.apply(Row(1, 2, Op.REMOVE, g0, gone))
        assert result.status is Status.FAILED
        assert result.error is not None and "whether it changed anything is unknown" in \
            result.error
        assert gone not in ds_groups(sb)[g0]


class NoPeopleSearch(DocSpaceTarget):
    """A portal where the people search is refused (an unknown route stands in for it)."""

    async def _load_hidden(self, group: str) -> tuple[Reply, set[str] | None]:
        return await self._t.send("GET", "/api/2.0/people/no-such-route"), None


async def test_adaxes_non_members_named_by_sid_end_noop(tmp_path: Path) -> None:
    """Removals of non-members named by SID (lower- and upper-case), with SIDs listed as
    arrays: noop, no removal sent; members named by SID are removed (ok)."""
    state = make_state(adaxes_groups=2, adaxes_members=6, docspace_groups=0, nested=False)
    objects = state["adaxes"]["objects"]
    g0 = next(dn for dn, o in objects.items() if o["type"] == "group")
    outsiders = [dn for dn, o in objects.items()
                 if o["type"] == "user" and dn not in objects[g0]["members"]][:3]
    inside = objects[g0]["members"][:2]
    rows = [{"op": "remove", "group": g0, "member": objects[m]["sid"].lower()}
            for m in outsiders]
    rows += [{"op": "remove", "group": g0, "member": objects[m]["sid"]} for m in inside]
    async with Sandbox(state) as sb:
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows, fmt="jsonl")
        ran = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert ran.code == 0, ran.stderr
        deletes = [e for e in sb.log if e.method == "DELETE"]
        assert len(deletes) == 2
        left = sb.dump()["adaxes"]["objects"][g0]["members"]
        assert not set(inside) & set(left)
    assert statuses(tmp_path / "results.jsonl") == Counter({"noop": 3, "ok": 2})


async def test_adaxes_list_capped_at_1000_by_default_is_read_whole(
    start_sandbox: Any, client: aiohttp.ClientSession
) -> None:
    """An older Adaxes stops a member list at its default cap unless `sizeLimit` says
    otherwise: the adapter asks for more, so a member past the cap is not taken for absent
    (a removal of it is sent and ok, not a noop)."""
    state = make_state(adaxes_groups=1, adaxes_members=12, docspace_groups=0, nested=False)
    sb = await start_sandbox(state, SandboxConfig(adaxes_default_size_limit=5))
    objects = sb.dump()["adaxes"]["objects"]
    g0 = next(dn for dn, o in objects.items() if o["type"] == "group")
    last = objects[g0]["members"][-1]
    target = make_target(TargetKind.ADAXES, transport(sb, client, kind=TargetKind.ADAXES),
                         precheck=True)
    result = await target.apply(Row(1, 2, Op.REMOVE, g0, last))
    assert result == Result(Status.OK, http_status=200, attempts=1)
    assert last not in sb.dump()["adaxes"]["objects"][g0]["members"]


async def test_plan_of_a_job_without_precheck_predicts_what_it_records(tmp_path: Path) -> None:
    """With precheck off the run sends every row unread: on DocSpace a removal of a
    non-member is recorded ok, and a move of someone in neither group adds them to the
    destination. plan says change for those (precheck off), so its counts are the run's."""
    state = make_state(docspace_groups=2, docspace_members=8, guests=0, terminated=0,
                       adaxes_groups=0)
    async with Sandbox(state) as sb:
        g0, g1 = list(ds_groups(sb))
        now = ds_groups(sb)
        users = kinds(sb)
        strangers = [u for u in users if all(u not in m for m in now.values())][:2]
        member = sorted(now[g0] - now[g1])[0]
        rows = [{"op": "remove", "group": g0, "member": member},
                {"op": "remove", "group": g0, "member": strangers[0]},
                {"op": "move", "group": g0, "member": strangers[1], "to_group": g1}]
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False})
        code, plan = await plan_json(job, DS_TOKEN)
        assert code == 0
        assert plan["total"] == {"change": 3, "already": 0, "fail": 0, "invalid": 0}
        from bulkgroups.targets.decision import NO_PRECHECK
        assert plan["unsure"] == {NO_PRECHECK: 2}
        ran = await run_cli("run", str(job), "--quiet")
        assert ran.code == 0, ran.stderr
        assert strangers[1] in ds_groups(sb)[g1]
    assert run_counts(tmp_path / "results.jsonl") == nonzero(plan["total"])
