"""Jobs that select their own rows (`[input] select`): each run exports first, beside its
results, then runs that file; resume uses the first export. Real CLI, real HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkgroups.export.select import MemberKind, Where
from bulkgroups.job import JobError, load_job
from bulkgroups.model import Op
from bulkgroups.sandbox import Limits, Sandbox, SandboxConfig, make_state
from bulkgroups.sandbox.docspace_state import DsUser
from tests.support import AX_TOKEN, finish, last_outcomes, run_cli, start_cli, write_job

NO_LIMITS = SandboxConfig(limits=Limits.off())
# The job's defaults (precheck on): the DocSpace adapter finds hidden terminated members.
LIMITS: dict[str, Any] = {}


def select_job(folder: Path, sb: Sandbox, select: str, **kw: Any) -> Path:
    job = write_job(folder, sb, **kw)
    text = job.read_text().replace('path = "input.csv"', f"select = {select}")
    job.write_text(text)
    (folder / "input.csv").unlink()
    return job


def groups_of(sb: Sandbox) -> dict[str, set[str]]:
    return {g: set(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


def terminated_in_groups(sb: Sandbox) -> set[tuple[str, str]]:
    ds = sb.dump()["docspace"]
    return {(g, m) for g, v in ds["groups"].items() for m in v["members"]
            if ds["users"][m]["kind"] == "terminated"}


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


async def test_a_nightly_cleanup_runs_twice_and_the_second_finds_nothing(
        tmp_path: Path) -> None:
    """"Remove terminated accounts from every group, refuse if more than 200": the first run
    removes every terminated member (hidden from the group reads), its rows kept beside the
    results; the second selects nothing, sends no change and exits 0."""
    state = make_state(docspace_groups=4, docspace_members=30, terminated=6)
    ds = state["docspace"]
    terminated = [u for u, v in ds["users"].items() if v["kind"] == "terminated"]
    for g in list(ds["groups"].values())[1:]:
        g["members"].append(terminated[0])
    async with Sandbox(state) as sb:
        before = groups_of(sb)
        hidden = terminated_in_groups(sb)
        assert len(hidden) == 9
        job = select_job(tmp_path, sb, '{ member_kind = ["terminated"] }',
                         safety={"max_changes": 200}, limits=LIMITS)
        first = await run_cli("run", str(job), "--results", str(tmp_path / "r1.jsonl"))
        assert first.code == 0, first.stderr
        assert "selected 9 rows from 4 groups" in first.stdout
        assert terminated_in_groups(sb) == set()
        assert groups_of(sb) == {g: ms - set(terminated) for g, ms in before.items()}
        kept = tmp_path / "r1.selected.jsonl"
        assert {(r["group"], r["member"]) for r in lines(kept)} == hidden
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
        assert {o["status"] for o in last_outcomes(tmp_path / "r1.jsonl").values()} == {"ok"}
        meta = orjson.loads((tmp_path / "r1.meta.json").read_bytes())
        assert meta["input"] == str(kept.resolve())
        assert meta["runs"][0]["selected"]["rows"] == 9

        sb.clear_log()
        second = await run_cli("run", str(job), "--results", str(tmp_path / "r2.jsonl"))
        assert second.code == 0, second.stderr
        assert "selected 0 rows from 4 groups" in second.stdout
        assert lines(tmp_path / "r2.selected.jsonl") == []
        assert not [e for e in sb.log if e.method != "GET"]
        assert groups_of(sb) == {g: ms - set(terminated) for g, ms in before.items()}


async def test_max_changes_counts_the_selected_rows(tmp_path: Path) -> None:
    async with Sandbox(make_state(terminated=3)) as sb:
        before = groups_of(sb)
        job = select_job(tmp_path, sb, '{ member_kind = ["terminated"] }',
                         safety={"max_changes": 2}, limits=LIMITS)
        done = await run_cli("run", str(job), "--results", str(tmp_path / "r.jsonl"))
        assert done.code == 3
        assert "3 rows that would change something" in done.stderr
        assert not [e for e in sb.log if e.method != "GET"]
        assert groups_of(sb) == before


async def test_resume_after_a_kill_uses_the_first_export(tmp_path: Path) -> None:
    """SIGKILL mid-run, then a new terminated member appears: the resume finishes the rows
    the first run selected (same file, same bytes) and does not select again."""
    state = make_state(docspace_groups=2, docspace_members=320, terminated=300, guests=0)
    async with Sandbox(state, config=NO_LIMITS) as sb:
        job = select_job(tmp_path, sb, '{ member_kind = ["terminated"] }',
                         safety={"max_changes": 1000},
                         limits={**LIMITS, "rate": 100, "concurrency": 4})
        results = tmp_path / "r.jsonl"
        proc = await start_cli("run", str(job), "--quiet", "--results", str(results))
        await sb.wait_for_requests(60, timeout_s=60)
        proc.send_signal(signal.SIGKILL)
        assert (await finish(proc)).code == -signal.SIGKILL
        kept = tmp_path / "r.selected.jsonl"
        digest = hashlib.sha256(kept.read_bytes()).hexdigest()
        selected = {(r["group"], r["member"]) for r in lines(kept)}
        assert len(selected) == 300
        assert 0 < len(last_outcomes(results)) < 300

        # Someone is terminated after the first run selected its rows.
        g0 = next(iter(groups_of(sb)))
        late = "00000000-0000-4000-8000-00000000abcd"
        sb._core.docspace.users[late] = DsUser("Late Leaver", "terminated")
        sb._core.docspace.groups[g0].members[late] = None

        sb.clear_log()
        done = await run_cli("resume", str(results), "--quiet")
        assert done.code == 0, done.stderr
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest
        # No new selection: an export of every group starts with the group list, which the
        # adapter (reading single groups) never asks for.
        assert not [e for e in sb.log if e.path == "/api/2.0/group"]
        assert terminated_in_groups(sb) == {(g0, late)}
        outcomes = last_outcomes(results)
        assert sorted(outcomes) == list(range(1, 301))
        # noop: rows in flight at the kill, done but unrecorded, found done on resume.
        assert {o["status"] for o in outcomes.values()} <= {"ok", "noop"}


async def test_validate_dry_run_and_plan_show_what_the_selection_finds(
        tmp_path: Path) -> None:
    async with Sandbox(make_state(terminated=4)) as sb:
        before = groups_of(sb)
        job = select_job(tmp_path, sb, '{ member_kind = ["terminated", "guest"] }')
        for args in (["validate", str(job)], ["run", str(job), "--dry-run"]):
            done = await run_cli(*args)
            assert done.code == 0, done.stderr
            assert "selected 6 rows from 3 groups" in done.stdout, args
            assert "rows: 6 (6 valid, 0 invalid)" in done.stdout, args
        planned = await run_cli("plan", str(job))
        assert planned.code == 0, planned.stderr
        assert "total" in planned.stdout
        total = next(x for x in planned.stdout.splitlines() if x.startswith("total"))
        assert sum(int(n.replace(",", "")) for n in total.split()[1:]) == 6
        assert not [e for e in sb.log if e.method != "GET"]
        assert groups_of(sb) == before
        assert not list(tmp_path.glob("*.selected.jsonl"))


async def test_an_adaxes_selection_with_where(tmp_path: Path) -> None:
    async with Sandbox(make_state(disabled=2)) as sb:
        objects = sb.dump()["adaxes"]["objects"]
        g0 = next(dn for dn, o in objects.items() if o["type"] == "group")
        job = select_job(tmp_path, sb,
                         f'{{ groups = ["{g0}"], where = {{ accountDisabled = true }} }}',
                         kind="adaxes")
        done = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert done.code == 0, done.stderr
        after = sb.dump()["adaxes"]["objects"][g0]["members"]
        assert after == [m for m in objects[g0]["members"] if not objects[m].get("disabled")]


def _job(tmp_path: Path, kind: str, input_lines: str) -> Path:
    base = "http://127.0.0.1:1" + ("/restApi" if kind == "adaxes" else "")
    path = tmp_path / "job.toml"
    path.write_text(f'[job]\nname = "j"\n[target]\nkind = "{kind}"\nbase_url = "{base}"\n'
                    f'token_env = "T"\n[input]\n{input_lines}\n')
    return path


def test_the_select_key_is_read_and_checked(tmp_path: Path) -> None:
    g = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    job = load_job(_job(tmp_path, "docspace",
                        f'select = {{ groups = ["{g}"], member_kind = ["terminated"] }}'))
    sel = job.input.select
    assert sel is not None
    assert sel.groups == (g,) and sel.member_kind == {MemberKind.TERMINATED}
    assert sel.op is Op.REMOVE
    job = load_job(_job(tmp_path, "adaxes",
                        'select = { groups = ["CN=G,DC=x"], where = ["department=Sales", '
                        '"userAccountControl&=2"], op = "add", to_group = "CN=H,DC=x", '
                        "indirect = true }"))
    assert job.input.select is not None
    assert job.input.select.where == (Where("department", "Sales"),
                                      Where("userAccountControl", "2", bits=True))
    bad = {
        "docspace": [
            (f'path = "x.csv"\nselect = {{ groups = ["{g}"] }}', "not with select"),
            ('select = { where = ["a=b"] }', "Adaxes only"),
            ('select = { member_kind = ["ghost"] }', "user, guest or terminated"),
            ('select = { op = "move" }', "needs to_group"),
            (f'select = {{ op = "add", to_group = "{g}", member_kind = ["guest"] }}',
             "skips guests"),
            ('select = { colour = "red" }', "unknown key"),
            ('select = "all"', "must be a table"),
            ("", "path (an input file) or select"),
        ],
        "adaxes": [
            ('select = { where = ["accountDisabled=true"] }', "groups named"),
            ('select = { groups = ["CN=G,DC=x"], indirect = true }', "direct members only"),
            ('select = { groups = ["CN=G,DC=x"], where = ["=x"] }', "where"),
            ('select = { groups = ["CN=G,DC=x"], member_kind = ["user"] }', "DocSpace only"),
        ],
    }
    for kind, cases in bad.items():
        for text, message in cases:
            with pytest.raises(JobError, match=re.escape(message)):
                load_job(_job(tmp_path, kind, text))


async def test_a_signal_while_selecting_stops_at_once_with_nothing_sent(
        tmp_path: Path) -> None:
    state = make_state(docspace_groups=40, docspace_members=5, guests=0, terminated=2)
    async with Sandbox(state) as sb:
        before = groups_of(sb)
        job = select_job(tmp_path, sb, '{ member_kind = ["terminated"] }',
                         limits={"rate": 4, "concurrency": 2})
        proc = await start_cli("run", str(job), "--results", str(tmp_path / "r.jsonl"))
        await sb.wait_for_requests(3, timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        done = await finish(proc, timeout_s=10)
        assert done.code == 143, done.stderr
        assert "nothing was sent" in done.stderr
        assert not [e for e in sb.log if e.method != "GET"]
        assert groups_of(sb) == before
        for name in ("r.jsonl", "r.meta.json", "r.selected.jsonl"):
            assert not (tmp_path / name).exists()
        assert not list(tmp_path.glob(".*tmp"))


async def test_a_group_the_selection_cannot_read_makes_the_run_exit_1(tmp_path: Path) -> None:
    async with Sandbox(make_state(terminated=2)) as sb:
        g0 = next(iter(groups_of(sb)))
        missing = "00000000-0000-4000-8000-000000000001"
        job = select_job(tmp_path, sb,
                         f'{{ groups = ["{g0}", "{missing}"], member_kind = ["terminated"] }}',
                         limits=LIMITS)
        done = await run_cli("run", str(job), "--results", str(tmp_path / "r.jsonl"))
        assert done.code == 1, done.stderr
        assert f"{missing}: could not be read" in done.stderr
        assert terminated_in_groups(sb) == set()
        meta = orjson.loads((tmp_path / "r.meta.json").read_bytes())
        assert meta["runs"][0]["selected"]["unreadable"] == [missing]
        assert meta["runs"][0]["exit"] == 1


async def test_approval_holds_the_selected_rows_and_apply_runs_them(tmp_path: Path) -> None:
    """require_approval: the run selects, writes a plan of the selected rows and exits 3;
    `apply` runs exactly those rows (the kept file), selecting nothing new."""
    async with Sandbox(make_state(terminated=3)) as sb:
        job = select_job(tmp_path, sb, '{ member_kind = ["terminated"] }',
                         safety={"require_approval": True})
        held = await run_cli("run", str(job), "--results", str(tmp_path / "r.jsonl"))
        assert held.code == 3, held.stderr
        assert not [e for e in sb.log if e.method != "GET"]
        plan = tmp_path / "r.plan.jsonl"
        assert plan.is_file()
        sb.clear_log()
        done = await run_cli("apply", str(plan), "--results", str(tmp_path / "a.jsonl"),
                             "--quiet")
        assert done.code == 0, done.stderr
        assert terminated_in_groups(sb) == set()
        assert not [e for e in sb.log if e.path == "/api/2.0/group"]
        assert len(last_outcomes(tmp_path / "a.jsonl")) == 3
