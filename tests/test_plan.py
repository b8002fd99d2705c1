"""`bulkgroups plan`: the adapters' pure decisions tallied, and plan against a seeded sandbox
matching what `bulkgroups run` then does, for both APIs, with nothing but GETs sent while
planning."""

from __future__ import annotations

import asyncio
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bulkgroups.identity import norm_id
from bulkgroups.model import InvalidRow, Op, Row, TargetKind
from bulkgroups.planning.forecast import Snapshot, render_text, tally
from bulkgroups.sandbox import Sandbox, make_state
from bulkgroups.targets import adaxes, docspace
from bulkgroups.targets.adaxes import Members as AdaxesMembers
from bulkgroups.targets.decision import Decision, Kind, Lookup, Membership, Unreadable, effect
from bulkgroups.targets.docspace import DsMembers
from tests.support import (
    AX_TOKEN,
    DS_TOKEN,
    Done,
    cli_env,
    finish,
    last_outcomes,
    run_cli,
    write_job,
)

G1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
G2 = "1f8fad5b-d9cb-469f-a165-70867728950e"
G3 = "2f8fad5b-d9cb-469f-a165-70867728950e"
GONE = "00000000-0000-4000-8000-00000000dead"
A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"

SALES = "CN=Sales,OU=Groups,DC=example,DC=com"
SUPPORT = "CN=Support,OU=Groups,DC=example,DC=com"
ANN = "CN=Lee\\, Ann,OU=Users,DC=example,DC=com"
ANN_GUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
ANN_SID = "S-1-5-21-1004336348-1177238915-682003330-1100"
BEN = "CN=Ben Smith,OU=Users,DC=example,DC=com"


def ds_group(members: list[str], hidden: tuple[str, ...] = ()) -> DsMembers:
    group = DsMembers(members)
    group.hidden = {norm_id(h) for h in hidden}
    return group


def ds_snapshot(groups: dict[str, list[str]], missing: tuple[str, ...] = ()) -> Snapshot:
    known: dict[str, Membership | Unreadable] = {g: ds_group(m) for g, m in groups.items()}
    for g in missing:
        known[g] = Unreadable(f"group {g} not found (404)")
    return Snapshot(known)


def judge(r: Row, snap: Lookup, protected: frozenset[str] = frozenset(),
          decide: Any = docspace.decide) -> Decision:
    d: Decision = decide(r, snap, protected)
    return d


def classify(r: Row, snap: Lookup, protected: frozenset[str] = frozenset(),
             decide: Any = docspace.decide) -> str:
    return judge(r, snap, protected, decide).kind.value


def row(op: Op, group: str, member: str = "", to_group: str = "", n: int = 1) -> Row:
    return Row(row=n, line=n + 1, op=op, group=group, member=member, to_group=to_group)


def test_remove_and_add_against_the_member_list() -> None:
    """remove: change if a member, already if not; add: the other way round; any case."""
    snap = ds_snapshot({G1: [A, B]})
    assert classify(row(Op.REMOVE, G1, A), snap) == "change"
    assert classify(row(Op.REMOVE, G1.upper(), A.upper()), snap) == "change"
    assert classify(row(Op.REMOVE, G1, C), snap) == "already"
    assert classify(row(Op.ADD, G1, B), snap) == "already"
    assert classify(row(Op.ADD, G1, C), snap) == "change"


def test_decisions_name_their_precondition() -> None:
    """Each decision says the membership fact it rests on, which a fresh read re-checks."""
    snap = ds_snapshot({G1: [A, B], G2: [C]})
    d = judge(row(Op.REMOVE, G1, A), snap)
    assert (d.kind, d.precondition_text) == (Kind.CHANGE, f"member in group {G1}")
    d = judge(row(Op.MOVE, G1, A, G2), snap)
    assert d.precondition_text == f"member in group {G1}; member not in group {G2}"
    assert d.add
    d = judge(row(Op.MOVE, G2, C, G1), ds_snapshot({G2: [], G1: [C]}))
    assert (d.kind, d.precondition_text) == (
        Kind.ALREADY, f"member not in group {G2}; member in group {G1}")
    facts = judge(row(Op.REMOVE, G1, A), snap).precondition
    assert [f.holds(snap) for f in facts] == [True]
    assert [f.holds(ds_snapshot({G1: [B]})) for f in facts] == [False]


def test_docspace_hidden_terminated_members() -> None:
    """A member not listed may be a hidden terminated one: removing it is a change when the
    terminated members read says so, already when it proves the member absent, and unsure
    (sent anyway) when they could not be read. A hidden member cannot be moved: adds skip
    terminated accounts."""
    snap = Snapshot({G1: ds_group([A], hidden=(B,)), G2: ds_group([])})
    assert classify(row(Op.REMOVE, G1, B), snap) == "change"
    assert classify(row(Op.REMOVE, G1, C), snap) == "already"
    assert classify(row(Op.ADD, G1, B), snap) == "already"
    moved = judge(row(Op.MOVE, G1, B, G2), snap)
    assert moved.kind is Kind.FAIL and "terminated" in (moved.reason or "")
    d = judge(row(Op.REMOVE, G1, C), Snapshot({G1: DsMembers([A])}))
    assert d.kind is Kind.CHANGE and d.unsure == docspace.HIDDEN_UNKNOWN


def test_move_source_destination_and_neither() -> None:
    """move: change from the source, already when only in the destination, fail in neither."""
    snap = ds_snapshot({G1: [A, B], G2: [B, C]})
    assert classify(row(Op.MOVE, G1, A, G2), snap) == "change"
    assert classify(row(Op.MOVE, G1, B, G2), snap) == "change"  # in both: still leaves G1
    assert classify(row(Op.MOVE, G1, C, G2), snap) == "already"
    j = judge(row(Op.MOVE, G2, A, G3), ds_snapshot({G2: [B], G3: []}))
    assert j.kind is Kind.FAIL and j.reason == f"member is not in group {G2} (nor in {G3})"


def test_move_all_counts_one_row() -> None:
    """move_all: change when the source has members, already when it is empty."""
    snap = ds_snapshot({G1: [A, B], G2: [], G3: []})
    assert classify(row(Op.MOVE_ALL, G1, to_group=G2), snap) == "change"
    assert classify(row(Op.MOVE_ALL, G3, to_group=G2), snap) == "already"


def test_move_all_carrying_a_protected_member_is_invalid() -> None:
    """Like the run, a move_all whose source holds a protected id is refused as invalid."""
    snap = ds_snapshot({G1: [A, B], G2: []})
    r = row(Op.MOVE_ALL, G1, to_group=G2)
    assert classify(r, snap, frozenset({norm_id(B)})) == "invalid"
    assert classify(r, snap, frozenset({norm_id(C)})) == "change"


def test_unknown_groups_fail() -> None:
    """A group that is not there (404) fails every row naming it, source or destination."""
    snap = ds_snapshot({G1: [A]}, missing=(GONE,))
    for r in (row(Op.REMOVE, GONE, A), row(Op.ADD, GONE, A), row(Op.MOVE, G1, A, GONE),
              row(Op.MOVE, GONE, A, G1), row(Op.MOVE_ALL, G1, to_group=GONE)):
        j = judge(r, snap)
        assert j.kind is Kind.FAIL and j.reason == f"group {GONE} not found (404)", r


def ax_members(*members: dict[str, Any]) -> AdaxesMembers:
    parsed = AdaxesMembers.parse(list(members))
    assert parsed is not None
    return parsed


def test_adaxes_compares_dn_guid_and_sid_the_directory_way() -> None:
    """DNs compare normalised (case, spaces, escapes), GUIDs casefolded with braces off."""
    snap = Snapshot({SALES: ax_members({"dn": ANN, "guid": ANN_GUID})})
    spellings = ["cn=lee\\, ann, ou=users, dc=example, dc=com", "CN=Lee\\2C Ann,OU=Users,"
                 "DC=example,DC=com", "{" + ANN_GUID.upper() + "}"]
    for who in spellings:
        assert classify(row(Op.REMOVE, "cn=sales, ou=groups,dc=example,dc=com", who), snap,
                        decide=adaxes.decide) == "change", who
    assert classify(row(Op.REMOVE, SALES, BEN), snap, decide=adaxes.decide) == "already"


def test_sid_rows_use_the_sid_when_listed_and_count_as_change_when_not() -> None:
    """With objectSid listed (an array, as Adaxes answers) a SID row is settled; without it
    the run decides (change, unsure)."""
    listed = Snapshot({SALES: ax_members({"dn": ANN, "properties": {"objectSid": [ANN_SID]}})})
    assert classify(row(Op.REMOVE, SALES, ANN_SID.lower()), listed,
                    decide=adaxes.decide) == "change"
    assert classify(row(Op.REMOVE, SALES, ANN_SID[:-1] + "9"), listed,
                    decide=adaxes.decide) == "already"
    unlisted = Snapshot({SALES: ax_members({"dn": "CN=x,DC=y"})})
    j = judge(row(Op.REMOVE, SALES, ANN_SID), unlisted, decide=adaxes.decide)
    assert j.kind is Kind.CHANGE and j.unsure == adaxes.SID_UNKNOWN


def test_every_adaxes_change_says_business_rules_may_intervene() -> None:
    """A read cannot see approval or denial rules: each Adaxes change says so."""
    snap = Snapshot({SALES: ax_members({"dn": ANN}), SUPPORT: ax_members()})
    for r in (row(Op.REMOVE, SALES, ANN), row(Op.ADD, SUPPORT, BEN),
              row(Op.MOVE, SALES, ANN, SUPPORT)):
        j = judge(r, snap, decide=adaxes.decide)
        assert (j.kind, j.unsure) == (Kind.CHANGE, adaxes.BUSINESS_RULES), r
    assert judge(row(Op.REMOVE, SALES, BEN), snap, decide=adaxes.decide).unsure is None


def test_adaxes_list_cut_at_the_size_limit_settles_nothing_absent() -> None:
    """A list as long as the sizeLimit asked for may have been cut: absence proves nothing."""
    cut = AdaxesMembers.parse([{"dn": f"CN=u{i},DC=x"} for i in range(3)])
    assert cut is not None
    cut.whole = False
    assert cut.has("CN=u1,DC=x") is True
    assert cut.has("CN=other,DC=x") is None


def _plan(items: list[Row | InvalidRow], snap: Snapshot, cap: int = 10) -> Any:
    valid = sum(isinstance(i, Row) for i in items)
    return tally(items, snap, docspace.decide, max_changes=cap, changes=valid)


def test_rows_see_the_changes_of_earlier_rows() -> None:
    """A duplicate removal is already done; an add after a removal changes again; a move
    after a move_all sees the moved members where they went."""
    snap = ds_snapshot({G1: [A, B], G2: [C], G3: []})
    items: list[Row | InvalidRow] = [
        row(Op.REMOVE, G1, A, n=1), row(Op.REMOVE, G1, A, n=2), row(Op.ADD, G1, A, n=3),
        row(Op.MOVE_ALL, G1, to_group=G2, n=4), row(Op.MOVE, G2, B, G3, n=5),
        row(Op.MOVE, G1, B, G3, n=6), row(Op.MOVE_ALL, G1, to_group=G3, n=7),
    ]
    verdicts = []
    for item in items:
        assert isinstance(item, Row)
        verdicts.append(classify(item, snap))
        if verdicts[-1] == "change":
            effect(item, snap)
    assert verdicts == ["change", "already", "change", "change", "change", "already",
                        "already"]
    fresh = ds_snapshot({G1: [A, B], G2: [C], G3: []})
    assert _plan(items, fresh).total.to_json() == {
        "change": 4, "already": 3, "fail": 0, "invalid": 0
    }


def test_counts_per_group_invalid_protected_and_safety() -> None:
    """Per group and total counts; invalid and protected rows apart; the cap's verdict."""
    snap = ds_snapshot({G1: [A], G2: []}, missing=(GONE,))
    items: list[Row | InvalidRow] = [
        row(Op.REMOVE, G1, A, n=1),
        row(Op.REMOVE, G1.upper(), B, n=2),
        row(Op.ADD, G2, A, n=3),
        row(Op.REMOVE, GONE, A, n=4),
        InvalidRow(row=5, line=6, reason="member: not a UUID", op="remove", group=G1,
                   member="x"),
        InvalidRow(row=6, line=7, reason="protected", op="remove", group=G2, member=A),
        InvalidRow(row=7, line=8, reason="unknown op 'x'"),
    ]
    plan = _plan(items, snap, cap=3)
    assert plan.to_json() == {
        "total": {"change": 2, "already": 1, "fail": 1, "invalid": 3},
        "groups": {
            G1: {"change": 1, "already": 1, "fail": 0, "invalid": 1},
            G2: {"change": 1, "already": 0, "fail": 0, "invalid": 1},
            GONE: {"change": 0, "already": 0, "fail": 1, "invalid": 0},
        },
        "unsure": {},
        "safety": {"max_changes": 3, "changes": 4, "would_refuse": True, "protected": 1},
    }
    assert plan.exit_code == 1
    text = render_text(plan, job="nightly", kind=TargetKind.DOCSPACE,
                       target="docspace https://portal")
    assert f"group {GONE} not found (404)" in text
    assert "would refuse (exit 3): pass --max-changes 4" in text
    assert "1 rows name a protected id" in text


def test_nothing_to_fail_exits_0() -> None:
    """Only changes and already-done rows: exit 0."""
    plan = _plan([row(Op.REMOVE, G1, A), row(Op.REMOVE, G1, B, n=2)], ds_snapshot({G1: [A]}))
    assert plan.exit_code == 0 and not plan.would_refuse


# --- against the sandbox -------------------------------------------------------------------

# Until `plan` is registered in bulkgroups.cli.main, register it for the subprocess here.
_CLI = "from bulkgroups.cli import main; main()"


async def plan_cli(*args: str, token: str) -> Done:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CLI, "plan", *args, env=cli_env(token),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    return await finish(proc)


_AS_PLAN = {"ok": "change", "pending": "change", "noop": "already", "failed": "fail",
            "invalid": "invalid"}


def _run_counts(results: Path, kind: TargetKind) -> tuple[Counter[str], dict[str, Counter[str]]]:
    total: Counter[str] = Counter()
    per: dict[str, Counter[str]] = {}
    for o in last_outcomes(results).values():
        verdict = _AS_PLAN[o["status"]]
        total[verdict] += 1
        if o["group"]:
            per.setdefault(norm_id(o["group"]), Counter())[verdict] += 1
    return total, per


def _plan_counts(plan: dict[str, Any], kind: TargetKind
                 ) -> tuple[Counter[str], dict[str, Counter[str]]]:
    total = Counter({k: v for k, v in plan["total"].items() if v})
    per = {norm_id(g): Counter({k: v for k, v in c.items() if v})
           for g, c in plan["groups"].items()}
    return total, per


async def test_docspace_plan_matches_the_run(tmp_path: Path) -> None:
    """DocSpace: plan --json sends only GETs, and its counts are the run's, group by group."""
    state = make_state(docspace_groups=4, docspace_members=20)
    groups = state["docspace"]["groups"]
    g0, g1, g2, g3 = list(groups)
    users = sorted(state["docspace"]["users"])
    # Disjoint memberships, so that no row's verdict hangs on the order the run takes.
    for g, members in ((g0, users[:12]), (g1, users[12:20]), (g2, users[20:26]), (g3, [])):
        groups[g]["members"] = members
    in0, in1, outsiders, keeper = users[:11], users[12:20], users[30:], users[11]
    rows = (
        [{"op": "remove", "group": g0, "member": m} for m in in0[:4]]
        + [{"op": "remove", "group": g0, "member": outsiders[0]},
           {"op": "add", "group": g1, "member": outsiders[1]},
           {"op": "add", "group": g1.upper(), "member": in1[0].upper()},
           {"op": "move", "group": g0, "member": in0[4], "to_group": g1},
           {"op": "move", "group": g0, "member": in1[1], "to_group": g1},
           {"op": "move", "group": g0, "member": outsiders[2], "to_group": g1},
           {"op": "move_all", "group": g3, "to_group": g1},
           {"op": "remove", "group": GONE, "member": in0[5]},
           {"op": "remove", "group": g0, "member": "not-a-uuid"},
           {"op": "remove", "group": g0, "member": keeper},
           {"op": "move_all", "group": g2, "to_group": g1},
           {"op": "move_all", "group": g0, "to_group": g3}]
    )
    async with Sandbox(state) as sb:
        job = write_job(tmp_path, sb, rows=rows, safety={"protected": [keeper]})
        done = await plan_cli(str(job), "--json", token=DS_TOKEN)
        assert done.code == 1, done.stderr
        assert {e.method for e in sb.log} == {"GET"}
        # g0, g1, g2, g3 and the unknown one, once each; the four known ones' hidden
        # (terminated) members once each.
        paths = Counter(e.path.split("?")[0] for e in sb.log)
        assert len(sb.log) == 9 and paths["/api/2.0/people/filter"] == 4
        assert sb.dump()["docspace"]["groups"] == state["docspace"]["groups"]
        plan = orjson.loads(done.stdout)
        ran = await run_cli("run", str(job), "--quiet")
        assert ran.code == 1, ran.stderr
    # The last move_all would carry the protected member along: invalid, like the run says.
    assert plan["total"] == {"change": 7, "already": 4, "fail": 2, "invalid": 3}
    assert plan["safety"] == {"max_changes": 5000, "changes": 14, "would_refuse": False,
                              "protected": 2, "group_guard": []}
    kind = TargetKind.DOCSPACE
    assert _plan_counts(plan, kind) == _run_counts(tmp_path / "results.jsonl", kind)


async def test_adaxes_plan_matches_the_run(tmp_path: Path) -> None:
    """Adaxes by DN, GUID and SID: plan sends only GETs; its counts are the run's."""
    state = make_state(adaxes_groups=4, adaxes_members=12)
    objects = state["adaxes"]["objects"]
    g0, g1, g2, g3 = [dn for dn, o in objects.items() if o["type"] == "group"][:4]
    users = [dn for dn, o in objects.items() if o["type"] == "user"]
    for g, members in ((g0, users[:10]), (g1, users[10:16]), (g2, []), (g3, users[16:20])):
        objects[g]["members"] = members
    in0, in1, outsiders = users[:10], users[10:16], users[20:]
    nope = "CN=Nope,OU=Groups,DC=example,DC=com"
    rows = [
        {"op": "remove", "group": g0, "member": in0[0]},
        {"op": "remove", "group": objects[g0]["guid"], "member": objects[in0[1]]["guid"]},
        {"op": "remove", "group": g0, "member": objects[in0[2]]["sid"]},
        {"op": "remove", "group": g0, "member": outsiders[0]},
        {"op": "add", "group": g1, "member": outsiders[1]},
        {"op": "add", "group": g1.lower(), "member": in1[0].lower()},
        {"op": "move", "group": g0, "member": in0[3], "to_group": g1},
        {"op": "move", "group": g0, "member": in1[1], "to_group": g1},
        {"op": "move", "group": g0, "member": outsiders[2], "to_group": g1},
        {"op": "move_all", "group": g2, "to_group": g1},
        {"op": "remove", "group": nope, "member": in0[4]},
        {"op": "remove", "group": g0, "member": "garbage"},
        {"op": "move_all", "group": g3, "to_group": g1},
    ]
    async with Sandbox(state) as sb:
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows, fmt="jsonl")
        done = await plan_cli(str(job), "--json", token=AX_TOKEN)
        assert done.code == 1, done.stderr
        assert {e.method for e in sb.log} == {"GET"}
        assert len(sb.log) == 6  # g0 by DN and by GUID, g1, g2, g3, the unknown one
        plan = orjson.loads(done.stdout)
        ran = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert ran.code == 1, ran.stderr
    assert plan["total"] == {"change": 6, "already": 4, "fail": 2, "invalid": 1}
    kind = TargetKind.ADAXES
    assert _plan_counts(plan, kind) == _run_counts(tmp_path / "results.jsonl", kind)


async def test_plan_text_exit_as_the_run_and_refused_credentials_exit_3(tmp_path: Path) -> None:
    """A plan prints the table and exits as the run would: 3 over max_changes, 0 under it;
    a wrong token exits 3; a bad job 2."""
    async with Sandbox(make_state()) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:3]]
        job = write_job(tmp_path, sb, rows=rows, safety={"max_changes": 2})
        done = await plan_cli(str(job), token=DS_TOKEN)
        assert done.code == 3, done.stderr
        assert re.search(rf"{g0} \(.*\) +3 +0 +0 +0", done.stdout), done.stdout
        assert "would refuse (exit 3): pass --max-changes 3" in done.stdout
        job.write_text(job.read_text().replace("max_changes = 2", "max_changes = 3"))
        assert (await plan_cli(str(job), token=DS_TOKEN)).code == 0
        refused = await plan_cli(str(job), token="sk-wrong")
        assert refused.code == 3 and "401" in refused.stderr
        assert {e.method for e in sb.log} == {"GET"}
    (tmp_path / "bad.toml").write_text("[job]\n", encoding="utf-8")
    bad = await plan_cli(str(tmp_path / "bad.toml"), token=DS_TOKEN)
    assert bad.code == 2 and "bad.toml" in bad.stderr


def test_a_duplicate_row_is_already_done() -> None:
    """A copy of an earlier row (dedupe's SkippedRow) is the run's noop: already."""
    from bulkgroups.model import SkippedRow
    items: list[Any] = [
        row(Op.REMOVE, G1, A, n=1),
        SkippedRow(row=2, line=3, op=Op.REMOVE, group=G1, member=A, to_group="",
                   reason="duplicate of row 1"),
    ]
    plan = tally(items, ds_snapshot({G1: [A]}), docspace.decide, max_changes=10, changes=1)
    assert plan.total.to_json() == {"change": 1, "already": 1, "fail": 0, "invalid": 0}


async def test_plan_shows_the_group_names_it_read(tmp_path: Path) -> None:
    async with Sandbox(make_state()) as sb:
        groups = sb.dump()["docspace"]["groups"]
        g0 = next(iter(groups))
        member = sorted(groups[g0]["members"])[0]
        job = write_job(tmp_path, sb, rows=[{"op": "remove", "group": g0, "member": member}])
        done = await plan_cli(str(job), token=DS_TOKEN)
        assert done.code == 0, done.stderr
        assert f"{g0} ({groups[g0]['name']})" in done.stdout
