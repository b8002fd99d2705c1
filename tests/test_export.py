"""`bulkgroups export`: the real CLI in a subprocess, real HTTP to the sandbox, the rows it
writes compared with the sandbox's own state (its ground truth)."""

from __future__ import annotations

import csv
import os
import signal
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import orjson
import pytest

from bulkgroups.identity import norm_id
from bulkgroups.sandbox import Sandbox, make_state
from bulkgroups.sandbox.log import max_in_window, max_overlap
from bulkgroups.sandbox.seed import NESTED_GROUP_DN
from tests.support import AX_TOKEN, DS_TOKEN, finish, run_cli, start_cli, write_job

Pair = tuple[str, str]  # (group, member) in norm_id form


def read_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def pairs(rows: list[dict[str, str]]) -> set[Pair]:
    return {(norm_id(r["group"]), norm_id(r["member"])) for r in rows}


def ds_state(sb: Sandbox) -> tuple[dict[str, str], dict[str, set[str]]]:
    """DocSpace's truth: each user's kind, each group's members (hidden ones included)."""
    ds = sb.dump()["docspace"]
    kinds = {uid: u["kind"] for uid, u in ds["users"].items()}
    return kinds, {g: set(v["members"]) for g, v in ds["groups"].items()}


def ds_expected(sb: Sandbox, kinds: set[str]) -> set[Pair]:
    users, groups = ds_state(sb)
    return {(norm_id(g), norm_id(m)) for g, ms in groups.items() for m in ms
            if users[m] in kinds}


def ax_objects(sb: Sandbox) -> dict[str, dict[str, Any]]:
    return dict(sb.dump()["adaxes"]["objects"])


def ax_groups(sb: Sandbox) -> list[str]:
    return [dn for dn, o in ax_objects(sb).items() if o["type"] == "group"
            and dn != NESTED_GROUP_DN]


def ds_state_with_hidden(**kw: Any) -> dict[str, Any]:
    """Guests and terminated accounts in the first group, and one terminated account in the
    second too: the kinds to find, some of them hidden from every member list."""
    state = make_state(**kw)
    ds = state["docspace"]
    groups = list(ds["groups"].values())
    terminated = [u for u, v in ds["users"].items() if v["kind"] == "terminated"]
    groups[1]["members"].append(terminated[0])
    return state


async def test_docspace_member_kinds_match_the_state(tmp_path: Path,
                                                    http: aiohttp.ClientSession) -> None:
    """Each --member-kind (and their union, and the default) exports exactly the members of
    that kind; terminated ones are found although no group read lists them, also past one
    page (105 in one group) of the people search."""
    state = ds_state_with_hidden(docspace_groups=3, docspace_members=130, guests=3,
                                 terminated=105)
    async with Sandbox(state) as sb:
        job = write_job(tmp_path, sb)
        cases: list[tuple[list[str], set[str]]] = [
            (["terminated"], {"terminated"}),
            (["guest"], {"guest"}),
            (["user"], {"user", "pending"}),
            (["guest", "terminated"], {"guest", "terminated"}),
            ([], {"user", "pending", "guest", "terminated"}),  # remove: every member
        ]
        for n, (flags, kinds) in enumerate(cases):
            out = tmp_path / f"out{n}.jsonl"
            args = [a for k in flags for a in ("--member-kind", k)]
            done = await run_cli("export", str(job), "-o", str(out), *args)
            assert done.code == 0, done.stderr
            rows = read_rows(out)
            assert {r["op"] for r in rows} <= {"remove"}
            assert pairs(rows) == ds_expected(sb, kinds), flags
            assert len(rows) == len(pairs(rows))  # no duplicate row
        terminated = ds_expected(sb, {"terminated"})
        assert len(terminated) == 106
        # The hidden fact the people search gets round: no group read lists them.
        for gid in {g for g, _ in terminated}:
            async with http.get(f"{sb.base_url}/api/2.0/group/{gid}",
                                headers={"Authorization": f"Bearer {DS_TOKEN}"}) as resp:
                listed = {m["id"] for m in (await resp.json())["response"]["members"]}
            assert not listed & {m for g, m in terminated if g == gid}
        people = [e for e in sb.log if e.path == "/api/2.0/people/filter"]
        assert people and all(int(parse_qs(e.query)["count"][0]) <= 100 for e in people)
        assert {parse_qs(e.query)["startIndex"][0] for e in people} >= {"0", "100"}


async def test_docspace_pages_through_more_than_100_groups(tmp_path: Path) -> None:
    """No --group: every group, read from the group list 100 at a time (count <= 100)."""
    state = make_state(docspace_groups=230, docspace_members=2, guests=0, terminated=0)
    async with Sandbox(state) as sb:
        job = write_job(tmp_path, sb)
        out = tmp_path / "all.csv"
        done = await run_cli("export", str(job), "-o", str(out))
        assert done.code == 0, done.stderr
        rows = read_rows(out)
        assert pairs(rows) == ds_expected(sb, {"user"})
        assert len({r["group"] for r in rows}) == 230
        lists = [parse_qs(e.query) for e in sb.log if e.path == "/api/2.0/group"]
        assert sorted(int(q["startIndex"][0]) for q in lists) == [0, 100, 200]
        assert all(1 <= int(q["count"][0]) <= 100 for q in lists)
        assert "selected 460 rows from 230 groups" in done.stdout


async def test_adaxes_where_matches_any_value_of_the_property(tmp_path: Path) -> None:
    """--where on the properties the member list returns as arrays: accountDisabled=true and
    userAccountControl&=2 both give exactly the disabled accounts; =false the others."""
    async with Sandbox(make_state(disabled=3)) as sb:
        job = write_job(tmp_path, sb, kind="adaxes")
        objects = ax_objects(sb)
        g0 = ax_groups(sb)[0]
        disabled = {norm_id(m) for m in objects[g0]["members"] if objects[m].get("disabled")}
        enabled = {norm_id(m) for m in objects[g0]["members"]} - disabled
        assert len(disabled) == 3
        for n, (where, want) in enumerate([("accountDisabled=true", disabled),
                                           ("userAccountControl&=2", disabled),
                                           ("accountdisabled = FALSE", enabled)]):
            out = tmp_path / f"ax{n}.csv"
            done = await run_cli("export", str(job), "-o", str(out), "--group", g0,
                                 "--where", where, token=AX_TOKEN)
            assert done.code == 0, done.stderr
            assert pairs(read_rows(out)) == {(norm_id(g0), m) for m in want}, where
        asked = [parse_qs(e.query) for e in sb.log if e.method == "GET"]
        assert all("objectSid" in q["properties"][0].split(",") for q in asked)


async def test_adaxes_indirect_adds_members_of_nested_groups(tmp_path: Path) -> None:
    """--indirect --op add: every user under the group (nested ones too), never the nested
    group itself; a removal refuses --indirect (direct members only) with exit 2."""
    async with Sandbox(make_state(nested=True)) as sb:
        job = write_job(tmp_path, sb, kind="adaxes")
        objects = ax_objects(sb)
        _, g1, g2 = ax_groups(sb)
        assert NESTED_GROUP_DN in objects[g1]["members"]
        users = {norm_id(m) for m in objects[g1]["members"] if objects[m]["type"] == "user"}
        users |= {norm_id(m) for m in objects[NESTED_GROUP_DN]["members"]}
        out = tmp_path / "add.jsonl"
        done = await run_cli("export", str(job), "-o", str(out), "--group", g1, "--indirect",
                             "--op", "add", "--to-group", g2, token=AX_TOKEN)
        assert done.code == 0, done.stderr
        rows = read_rows(out)
        assert {(r["op"], norm_id(r["group"])) for r in rows} == {("add", norm_id(g2))}
        assert {norm_id(r["member"]) for r in rows} == users
        refused = await run_cli("export", str(job), "-o", str(tmp_path / "x.csv"), "--group",
                                g1, "--indirect", token=AX_TOKEN)
        assert refused.code == 2
        assert "direct members only" in refused.stderr
        assert not (tmp_path / "x.csv").exists()


async def test_protected_and_excluded_ids_never_appear(tmp_path: Path) -> None:
    """[safety] protected and --exclude, on both APIs, in any identifier form the target
    knows (an Adaxes member protected by GUID, excluded by SID, listed by DN)."""
    state = ds_state_with_hidden(docspace_groups=3, docspace_members=20)
    async with Sandbox(state) as sb:
        users, groups = ds_state(sb)
        g0, _, g2 = list(groups)
        hidden = sorted(m for m in groups[g0] if users[m] == "terminated")
        plain = sorted(m for m in groups[g0] if users[m] == "user")
        protected = [hidden[0], plain[0], g2]
        excluded = [hidden[1].upper(), plain[1]]
        (tmp_path / "exclude.txt").write_text("# never these\n\n" + "\n".join(excluded) + "\n")
        job = write_job(tmp_path, sb, safety={"protected": protected})
        out = tmp_path / "ds.csv"
        done = await run_cli("export", str(job), "-o", str(out), "--exclude",
                             str(tmp_path / "exclude.txt"))
        assert done.code == 0, done.stderr
        rows = read_rows(out)
        never = {norm_id(x) for x in protected + excluded}
        assert not {norm_id(v) for r in rows for v in (r["group"], r["member"])} & never
        everyone = ds_expected(sb, {"user", "pending", "guest", "terminated"})
        assert pairs(rows) == {(g, m) for g, m in everyone if g != norm_id(g2)
                               and m not in never}
        assert "skipped, a protected group" in done.stdout
        assert "left out: 2 protected, 2 excluded" in done.stdout

        ax_folder = tmp_path / "ax"
        ax_folder.mkdir()
        objects = ax_objects(sb)
        a0 = ax_groups(sb)[0]
        m_guid, m_sid = objects[a0]["members"][0], objects[a0]["members"][1]
        (ax_folder / "exclude.txt").write_text(objects[m_sid]["sid"] + "\n")
        ax_job = write_job(ax_folder, sb, kind="adaxes",
                           safety={"protected": ["{" + objects[m_guid]["guid"].upper() + "}"]})
        out = ax_folder / "ax.jsonl"
        done = await run_cli("export", str(ax_job), "-o", str(out), "--group", a0,
                             "--exclude", str(ax_folder / "exclude.txt"), token=AX_TOKEN)
        assert done.code == 0, done.stderr
        members = {norm_id(r["member"]) for r in read_rows(out)}
        assert members == {norm_id(m) for m in objects[a0]["members"][2:]}


async def test_an_unreadable_group_gets_no_rows_and_exit_1(tmp_path: Path) -> None:
    async with Sandbox(make_state()) as sb:
        _, groups = ds_state(sb)
        g0 = next(iter(groups))
        missing = "00000000-0000-4000-8000-000000000001"
        job = write_job(tmp_path, sb)
        out = tmp_path / "out.jsonl"
        done = await run_cli("export", str(job), "-o", str(out), "--group", g0,
                             "--group", missing, "--member-kind", "user")
        assert done.code == 1
        assert f"{missing}: could not be read" in done.stderr
        assert "NOT EXPORTED" in done.stdout
        assert {r["group"] for r in read_rows(out)} == {g0}


async def test_the_exported_file_runs_and_leaves_the_exact_state(tmp_path: Path) -> None:
    """Export, then run the file: DocSpace terminated and guests removed (the hidden ones
    too), users moved; Adaxes disabled accounts removed. Nothing else changes. The file is
    the owner's only (mode 600), and an existing one is not replaced without --force."""
    state = ds_state_with_hidden(docspace_groups=3, docspace_members=20)
    async with Sandbox(state) as sb:
        users, before = ds_state(sb)
        g0, g1, g2 = list(before)
        job = write_job(tmp_path, sb, safety={"max_changes": 1000})
        out = tmp_path / "rows.csv"
        done = await run_cli("export", str(job), "-o", str(out), "--member-kind", "terminated",
                             "--member-kind", "guest")
        assert done.code == 0, done.stderr
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        again = await run_cli("export", str(job), "-o", str(out))
        assert again.code == 2 and "--force" in again.stderr
        moving = tmp_path / "move.jsonl"
        done = await run_cli("export", str(job), "-o", str(moving), "--group", g0,
                             "--op", "move", "--to-group", g1)
        assert done.code == 0, done.stderr
        assert {(r["op"], r["to_group"]) for r in read_rows(moving)} == {("move", g1)}

        (tmp_path / "run").mkdir()
        run_job = write_job(tmp_path / "run", sb, safety={"max_changes": 1000}, name="rm")
        text = run_job.read_text().replace('path = "input.csv"', f'path = "{out}"')
        run_job.write_text(text)
        ran = await run_cli("run", str(run_job), "--quiet", "--results",
                            str(tmp_path / "r1.jsonl"))
        assert ran.code == 0, ran.stderr
        gone = {"terminated", "guest"}
        assert ds_state(sb)[1] == {g: {m for m in ms if users[m] not in gone}
                                   for g, ms in before.items()}
        text = run_job.read_text().replace(f'path = "{out}"', f'path = "{moving}"')
        run_job.write_text(text)
        ran = await run_cli("run", str(run_job), "--quiet", "--results",
                            str(tmp_path / "r2.jsonl"))
        assert ran.code == 0, ran.stderr
        users_g0 = {m for m in before[g0] if users[m] in ("user", "pending")}
        after = ds_state(sb)[1]
        assert after[g0] == set()
        assert after[g1] == {m for m in before[g1] if users[m] not in gone} | users_g0
        assert after[g2] == {m for m in before[g2] if users[m] not in gone}

        ax_folder = tmp_path / "ax"
        ax_folder.mkdir()
        objects = ax_objects(sb)
        a0 = ax_groups(sb)[0]
        ax_rows = ax_folder / "disabled.csv"
        ax_job = write_job(ax_folder, sb, kind="adaxes")
        done = await run_cli("export", str(ax_job), "-o", str(ax_rows), "--group", a0,
                             "--where", "accountDisabled=true", token=AX_TOKEN)
        assert done.code == 0, done.stderr
        text = ax_job.read_text().replace('path = "input.csv"', f'path = "{ax_rows}"')
        ax_job.write_text(text)
        ran = await run_cli("run", str(ax_job), "--quiet", token=AX_TOKEN)
        assert ran.code == 0, ran.stderr
        now = ax_objects(sb)
        assert set(now[a0]["members"]) == {m for m in objects[a0]["members"]
                                           if not objects[m].get("disabled")}
        assert all(now[g]["members"] == objects[g]["members"] for g in ax_groups(sb)[1:])


async def test_refused_credentials_exit_3_and_usage_errors_exit_2(tmp_path: Path) -> None:
    async with Sandbox(make_state()) as sb:
        job = write_job(tmp_path, sb)
        out = tmp_path / "out.csv"
        done = await run_cli("export", str(job), "-o", str(out), token="sk-wrong")
        assert done.code == 3
        assert "sk-wrong" not in done.stdout + done.stderr
        assert not out.exists()
        for args in (["--where", "accountDisabled=true"], ["--op", "move"],
                     ["--to-group", "00000000-0000-4000-8000-000000000001"],
                     ["--op", "add", "--to-group", "00000000-0000-4000-8000-000000000001",
                      "--member-kind", "guest"], ["--group", "not-a-uuid"]):
            bad = await run_cli("export", str(job), "-o", str(out), *args)
            assert bad.code == 2, args
        g0, g1, _ = ds_state(sb)[1]
        (tmp_path / "p").mkdir()
        guarded = write_job(tmp_path / "p", sb, safety={"protected": [g1]})
        bad = await run_cli("export", str(guarded), "-o", str(out), "--group", g0, "--op",
                            "move", "--to-group", g1)
        assert bad.code == 2 and "protected" in bad.stderr
        (tmp_path / "ax").mkdir()
        ax_job = write_job(tmp_path / "ax", sb, kind="adaxes", name="ax")
        bad = await run_cli("export", str(ax_job), "-o", str(out), token=AX_TOKEN)
        assert bad.code == 2 and "Adaxes needs the groups named" in bad.stderr
        assert not out.exists()


async def test_export_is_paced_like_a_run(tmp_path: Path) -> None:
    """The export's reads go through the run's transport: [limits] rate and concurrency hold
    for them too (measured on the sandbox's request log)."""
    state = make_state(docspace_groups=45, docspace_members=2, guests=0, terminated=1)
    async with Sandbox(state) as sb:
        job = write_job(tmp_path, sb, limits={"rate": 20, "concurrency": 3})
        done = await run_cli("export", str(job), "-o", str(tmp_path / "all.csv"))
        assert done.code == 0, done.stderr
        starts = [e.start for e in sb.log]
        assert len(starts) >= 45 * 3  # each group: its read, guests, terminated
        assert max_in_window(starts, 0.95) <= 20
        assert max_overlap((e.start, e.end) for e in sb.log) <= 3


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_signal_mid_export_exits_130_or_143_and_writes_nothing(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """Ctrl-C (or a TERM) while the groups are read: the documented exit, one line saying the
    file was not written, no "Aborted!" and no trace of a half file."""
    state = make_state(docspace_groups=40, docspace_members=2, guests=0, terminated=1)
    async with Sandbox(state) as sb:
        job = write_job(tmp_path, sb, limits={"rate": 4, "concurrency": 2})
        out = tmp_path / "all.csv"
        proc = await start_cli("export", str(job), "-o", str(out))
        await sb.wait_for_requests(3, timeout_s=30)
        proc.send_signal(sig)
        done = await finish(proc, timeout_s=10)
        assert done.code == code, done.stderr
        assert f"interrupted: {out} was not written" in done.stderr
        assert "Aborted" not in done.stderr + done.stdout
        assert "Traceback" not in done.stderr
        assert len(sb.log) < 40  # it stopped reading
        assert sorted(p.name for p in tmp_path.iterdir()) == ["input.csv", "job.toml"]


async def test_adaxes_answers_in_other_shapes_are_read(client: aiohttp.ClientSession) -> None:
    """A member list that carries the DN and GUID only as properties, in the
    [{propertyName, values}] form, single values included: still read, matched and named."""
    from bulkgroups.export.directory import read_adaxes
    from bulkgroups.export.select import Selection, parse_where
    from bulkgroups.http.auth import auth_for
    from bulkgroups.http.pacer import Pacer
    from bulkgroups.http.policy import RetryPolicy
    from bulkgroups.http.transport import Transport
    from bulkgroups.model import TargetKind
    from bulkgroups.secret import Secret
    from tests import hostile

    def member(n: int, disabled: bool) -> dict[str, Any]:
        return {"objectType": "user", "properties": [
            {"propertyName": "distinguishedName", "values": [f"CN=U{n},DC=x"]},
            {"propertyName": "objectGUID", "value": f"00000000-0000-4000-8000-00000000000{n}"},
            {"propertyName": "accountDisabled", "values": [disabled]},
        ]}

    async with hostile.Hostile() as srv:
        srv.on("GET", "/restApi/api/directoryObjects/groupMembers",
               hostile.json(200, {"items": [member(1, True), member(2, False)]}))
        t = Transport(client, base_url=f"{srv.url}/restApi",
                      auth=auth_for(TargetKind.ADAXES, Secret(AX_TOKEN)),
                      pacer=Pacer(rate=100.0, concurrency=2),
                      policy=RetryPolicy(max_retries=0), timeout_s=5.0)
        sel = Selection(groups=("CN=G,DC=x",), where=(parse_where("accountDisabled=true"),))
        got = await read_adaxes(t, "CN=G,DC=x", sel)
    assert got.error is None and got.seen == 2
    assert [(f.member, f.ids) for f in got.members] == [
        ("CN=U1,DC=x", ("CN=U1,DC=x", "00000000-0000-4000-8000-000000000001"))]
