"""`bulkgroups undo`: the rows that reverse a results file, and end to end against the
sandbox, a run followed by its undo leaves every group exactly as it was."""

from __future__ import annotations

import csv
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from click.testing import CliRunner, Result

from bulkgroups.cli.report import report_command, undo_command
from bulkgroups.model import Row, TargetKind
from bulkgroups.results.file import Record, decode
from bulkgroups.results.undo import InputRow, Trust, reverse, trust_of, write_undo
from bulkgroups.rows.readers import Format, read_rows
from bulkgroups.sandbox import Sandbox, make_state
from tests.support import AX_TOKEN, DS_TOKEN, Done, last_outcomes, run_cli, write_job

DATA = Path(__file__).parent / "data" / "reports"
G1 = "3f1c2a9e-8b1d-4c5e-9a7f-1b2c3d4e5f60"
G2 = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
DEAD = "00000000-0000-4000-8000-00000000dead"
NO_LEFT = ("the adapter does not record `left` on move_all yet: members already in the "
           "destination would be taken out of it on undo")


def member(i: int) -> str:
    return f"5e0c7a1b-2d3e-4f50-8a6b-7c8d9e0f{i:04d}"


def invoke(*args: str) -> Result:
    group = click.Group("bulkgroups")
    group.add_command(undo_command, "undo")
    group.add_command(report_command, "report")
    return CliRunner().invoke(group, list(args))


def outcome(row: int, op: str, status: str = "ok", **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "row": row, "line": row + 1, "key": "k", "op": op, "group": G1,
        "member": "" if op == "move_all" else member(row),
        "to_group": G2 if op in ("move", "move_all") else "", "status": status,
        "http_status": 200, "attempts": 1, "error": None, "elapsed_ms": 1.0,
        "finished_at": "2026-11-23T10:00:00.000Z", "moved": None, "left": None,
    }
    obj.update(extra)
    return obj


def rev(obj: dict[str, Any]) -> tuple[InputRow, ...]:
    """`reverse` of the line `obj` would be in a results file."""
    found = decode(orjson.dumps(obj))
    assert isinstance(found, Record)
    return reverse(found)


def write_results(path: Path, *lines: dict[str, Any] | bytes) -> Path:
    path.write_bytes(b"".join(
        (x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines
    ))
    return path


def read_input(path: Path) -> list[InputRow]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return [InputRow(r["op"], r["group"], r["member"], r["to_group"])
                    for r in csv.DictReader(f)]
    return [InputRow(**orjson.loads(x)) for x in path.read_bytes().splitlines()]


# -- the rows, without a server ---------------------------------------------------------------


def test_each_op_reverses_to_its_opposite() -> None:
    """remove→add, add→remove, move→move back, move with `left`→add, move_all→per member."""
    assert rev(outcome(1, "remove")) == (InputRow("add", G1, member(1)),)
    assert rev(outcome(2, "add")) == (InputRow("remove", G1, member(2)),)
    assert rev(outcome(3, "move")) == (InputRow("move", G2, member(3), G1),)
    assert rev(outcome(4, "move", left=[member(4)])) == (InputRow("add", G1, member(4)),)
    assert rev(outcome(5, "move_all", moved=["a", "b"], left=["c"])) == (
        InputRow("move", G2, "b", G1), InputRow("move", G2, "a", G1), InputRow("add", G1, "c"),
    )


def test_rows_that_changed_nothing_are_not_reversed() -> None:
    """noop, failed, invalid and pending rows give no rows; so does an empty move_all."""
    for status in ("noop", "failed", "invalid", "pending"):
        for op in ("remove", "add", "move", "move_all"):
            assert rev(outcome(1, op, status)) == (), (op, status)
    assert rev(outcome(1, "move_all", moved=[], left=[])) == ()


def test_partial_move_all_is_reversed_whatever_its_status() -> None:
    """A failed or pending move_all reverses the members its line lists."""
    for status in ("failed", "pending"):
        rows = rev(outcome(1, "move_all", status, moved=["a"], left=None))
        assert rows == (InputRow("move", G2, "a", G1),)


def test_trust_comes_from_the_metadata() -> None:
    """Only DocSpace without precheck is doubtful; no metadata is unknown; Adaxes is exact."""
    assert trust_of({"target": {"kind": "docspace"}, "limits": {"precheck": True}}) is Trust.EXACT
    assert trust_of({"target": {"kind": "docspace"}, "limits": {"precheck": False}}) is (
        Trust.NO_PRECHECK)
    assert trust_of({"target": {"kind": "docspace"}}) is Trust.UNKNOWN
    assert trust_of({"target": {"kind": "adaxes"}, "limits": {"precheck": False}}) is Trust.EXACT
    assert trust_of(None) is Trust.UNKNOWN


def test_latest_change_first_and_each_row_by_its_last_line(tmp_path: Path) -> None:
    """Fixture: row 4 (failed, then ok) is undone once, where the resume put it; torn line out."""
    for name in ("mixed.jsonl", "mixed.meta.json"):
        shutil.copy(DATA / name, tmp_path / name)
    out = tmp_path / "undo.csv"
    done = invoke("undo", str(tmp_path / "mixed.jsonl"), "-o", str(out))
    assert done.exit_code == 0, done.output
    assert read_input(out) == [
        InputRow("add", G1, member(10)),
        InputRow("move", G2, member(4), G1),
        InputRow("add", G1, member(2)),
        InputRow("add", G1, member(1)),
    ]
    assert "wrote 4 rows" in done.stdout and "add 3, move 1" in done.stdout
    assert "bulkgroups validate" in done.stdout and "/srv/jobs/cleanup.toml" in done.stdout
    assert "skipped 1 unreadable" in done.stderr
    assert "precheck" not in done.stderr  # precheck was on


def test_a_move_all_finished_on_resume_undoes_both_parts(tmp_path: Path) -> None:
    """A move_all that failed halfway and was finished by a resume: both lists are undone."""
    results = write_results(
        tmp_path / "r.jsonl",
        outcome(1, "move_all", "failed", moved=["a", "b"], left=["c"], error="2 of 5 not moved"),
        outcome(2, "remove"),
        outcome(1, "move_all", "ok", moved=["d"], left=["e"]),
    )
    summary = write_undo(results, tmp_path / "u.jsonl", fmt="jsonl")
    assert read_input(tmp_path / "u.jsonl") == [
        InputRow("move", G2, "d", G1), InputRow("add", G1, "e"),
        InputRow("add", G1, member(2)),
        InputRow("move", G2, "b", G1), InputRow("move", G2, "a", G1), InputRow("add", G1, "c"),
    ]
    assert summary.written == {"move": 3, "add": 3}


def test_an_old_move_all_without_members_is_reported_not_guessed(tmp_path: Path) -> None:
    """An ok move_all from before `moved` was recorded cannot be undone: a warning says so."""
    results = write_results(tmp_path / "r.jsonl", outcome(1, "move_all"), outcome(2, "add"))
    out = tmp_path / "u.csv"
    done = invoke("undo", str(results), "-o", str(out))
    assert done.exit_code == 0, done.output
    assert read_input(out) == [InputRow("remove", G1, member(2))]
    assert "1 results lines record a change without saying" in done.stderr


def test_written_files_are_valid_input_in_both_formats(tmp_path: Path) -> None:
    """CSV and JSONL output read back through the real reader as valid rows, none invalid."""
    results = write_results(
        tmp_path / "r.jsonl", outcome(1, "remove"), outcome(2, "add"), outcome(3, "move"),
        outcome(4, "move_all", moved=[member(40)], left=[member(41)]),
    )
    formats: tuple[tuple[str, Format], ...] = (
        ("u.csv", "csv"), ("u.jsonl", "jsonl"), ("u.ndjson", "jsonl"))
    for name, fmt in formats:
        done = invoke("undo", str(results), "-o", str(tmp_path / name))
        assert done.exit_code == 0, done.output
        rows = list(read_rows(tmp_path / name, fmt=fmt, kind=TargetKind.DOCSPACE))
        assert len(rows) == 5 and all(isinstance(r, Row) for r in rows), rows


def test_existing_output_is_kept_unless_forced(tmp_path: Path) -> None:
    """An existing FILE: exit 2 and untouched; with --force it is replaced."""
    results = write_results(tmp_path / "r.jsonl", outcome(1, "remove"))
    out = tmp_path / "u.csv"
    out.write_text("keep me\n")
    done = invoke("undo", str(results), "-o", str(out))
    assert done.exit_code == 2
    assert str(out) in done.stderr and "--force" in done.stderr
    assert out.read_text() == "keep me\n"
    done = invoke("undo", str(results), "-o", str(out), "--force")
    assert done.exit_code == 0, done.output
    assert read_input(out) == [InputRow("add", G1, member(1))]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """Missing results, an unknown extension, or the results file itself as FILE: exit 2."""
    missing = tmp_path / "nope.jsonl"
    done = invoke("undo", str(missing), "-o", str(tmp_path / "u.csv"))
    assert done.exit_code == 2 and str(missing) in done.stderr
    assert not (tmp_path / "u.csv").exists()
    results = write_results(tmp_path / "r.jsonl", outcome(1, "remove"))
    done = invoke("undo", str(results), "-o", str(tmp_path / "u.txt"))
    assert done.exit_code == 2 and ".csv or .jsonl" in done.stderr
    done = invoke("undo", str(results), "-o", str(tmp_path / "r.jsonl"), "--force")
    assert done.exit_code == 2
    assert not (tmp_path / "u.txt").exists()
    assert orjson.loads(results.read_bytes().splitlines()[0])["op"] == "remove"


def test_no_metadata_warns_that_precheck_is_unknown(tmp_path: Path) -> None:
    """Without RESULTS.meta.json, removals get the same warning, hedged."""
    results = write_results(tmp_path / "r.jsonl", outcome(1, "remove"), outcome(2, "remove"))
    done = invoke("undo", str(results), "-o", str(tmp_path / "u.csv"))
    assert done.exit_code == 0
    assert "2 remove rows" in done.stderr and "precheck" in done.stderr


def test_memory_stays_bounded_by_rows_not_lines(tmp_path: Path) -> None:
    """50,000 reversible rows: the peak allocation stays near 16 bytes a row plus one block."""
    results = tmp_path / "big.jsonl"
    with open(results, "wb") as f:
        f.write(b"".join(orjson.dumps(outcome(i, "remove", member=f"m{i}")) + b"\n"
                         for i in range(1, 50_001)))
    tracemalloc.start()
    try:
        summary = write_undo(results, tmp_path / "u.csv", fmt="csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.written == {"add": 50_000}
    assert peak < 5_000_000
    with open(tmp_path / "u.csv") as f:
        assert f.readline() == "op,group,member,to_group\n"
        assert f.readline() == f"add,{G1},m50000,\n"


# -- end to end against the sandbox -----------------------------------------------------------


def ds_groups(sb: Sandbox) -> dict[str, set[str]]:
    return {g: set(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


def ax_groups(sb: Sandbox) -> dict[str, set[str]]:
    objects = sb.dump()["adaxes"]["objects"]
    return {dn: set(o["members"]) for dn, o in objects.items() if o["type"] == "group"}


async def run_undo_file(folder: Path, sb: Sandbox, undo_file: Path, *, kind: str) -> Done:
    """Run a job whose input is `undo_file` itself, one row at a time so that the order
    (latest change first) holds."""
    folder.mkdir()
    job = write_job(folder, sb, kind=kind, limits={"concurrency": 1})
    text = job.read_text().replace('path = "input.csv"', f'path = "{undo_file}"')
    job.write_text(text)
    token = DS_TOKEN if kind == "docspace" else AX_TOKEN
    return await run_cli("run", str(job), "--quiet", token=token)


async def test_docspace_run_then_undo_restores_every_group(tmp_path: Path) -> None:
    """DocSpace remove, add, move (one member already in the destination): undo restores all;
    the noop, failed and invalid rows are not in the undo file."""
    state = make_state(docspace_groups=3, docspace_members=30)
    users = state["docspace"]["users"]
    async with Sandbox(state) as sb:
        before = ds_groups(sb)
        g0, g1, g2 = list(before)
        only0 = sorted(before[g0] - before[g2])
        both = sorted(before[g0] & before[g2])
        outsiders = sorted(u for u in users if not any(u in s for s in before.values()))
        assert len(only0) >= 6 and both and len(outsiders) >= 4
        rows = (
            [{"op": "remove", "group": g0, "member": m} for m in only0[:3]]
            + [{"op": "move", "group": g0, "member": m, "to_group": g2} for m in only0[3:5]]
            + [{"op": "move", "group": g0, "member": both[0], "to_group": g2}]
            + [{"op": "add", "group": g1, "member": u} for u in outsiders[:2]]
            + [{"op": "remove", "group": g1, "member": outsiders[2]},  # noop
               {"op": "remove", "group": DEAD, "member": only0[5]},  # failed: 404
               {"op": "move", "group": g1, "member": outsiders[3], "to_group": g2},  # failed
               {"op": "remove", "group": g0, "member": "not-a-uuid"}]  # invalid
        )
        job = write_job(tmp_path, sb, rows=rows)
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 1, done.stderr  # the failed and invalid rows
        statuses = [o["status"] for _, o in sorted(last_outcomes(tmp_path / "results.jsonl")
                                                   .items())]
        assert statuses == ["ok"] * 8 + ["noop", "failed", "failed", "invalid"]
        assert ds_groups(sb) != before

        undo_file = tmp_path / "undo.csv"
        undone = invoke("undo", str(tmp_path / "results.jsonl"), "-o", str(undo_file))
        assert undone.exit_code == 0, undone.output
        assert undone.stderr == ""
        written = read_input(undo_file)
        assert sorted(r.op for r in written) == ["add"] * 4 + ["move"] * 2 + ["remove"] * 2
        mentioned = {r.member for r in written}
        assert not mentioned & {outsiders[2], outsiders[3], only0[5], "not-a-uuid"}
        assert InputRow("add", g0, both[0]) in written  # only the removal is undone

        again = await run_undo_file(tmp_path / "undo-run", sb, undo_file, kind="docspace")
        assert again.code == 0, again.stderr
        assert ds_groups(sb) == before


async def test_docspace_move_all_undo_restores_guests_and_members_already_there(
    tmp_path: Path,
) -> None:
    """DocSpace move_all with guests (who only leave) and members already in the destination:
    undo moves the movers back and adds the others back, and nothing else."""
    # No terminated accounts: DocSpace hides them from member lists, so no move_all moves
    # them (test_target_docspace covers that); this test is about guests and movers.
    state = make_state(docspace_groups=2, docspace_members=20, guests=2, terminated=0)
    async with Sandbox(state) as sb:
        before = ds_groups(sb)
        g0, g1 = list(before)
        assert before[g0] & before[g1]  # some members are in both already
        job = write_job(tmp_path, sb, rows=[{"op": "move_all", "group": g0, "to_group": g1}])
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        assert ds_groups(sb)[g0] == set()
        line = last_outcomes(tmp_path / "results.jsonl")[1]
        if line.get("left") is None:
            pytest.xfail(NO_LEFT)
        undo_file = tmp_path / "undo.jsonl"
        undone = invoke("undo", str(tmp_path / "results.jsonl"), "-o", str(undo_file))
        assert undone.exit_code == 0, undone.output
        # DocSpace never adds a guest to a group (API.md, corrected): from the run's snapshot,
        # undo knows which members were guests and lists them instead of writing adds that
        # would silently do nothing.
        guests = {u for u, v in state["docspace"]["users"].items() if v.get("kind") == "guest"}
        assert guests and guests <= set(line["left"])
        for g in guests:
            assert f"cannot put back {g} in {g0}: a guest" in undone.stderr
        written = read_input(undo_file)
        assert len(written) == len(before[g0]) - len(guests)
        assert not {r.member for r in written} & guests
        assert {r.member for r in written if r.op == "add"} == set(line["left"]) - guests
        again = await run_undo_file(tmp_path / "undo-run", sb, undo_file, kind="docspace")
        assert again.code == 0, again.stderr
        assert ds_groups(sb) == {g0: before[g0] - guests, g1: before[g1]}


async def test_adaxes_run_then_undo_restores_every_group(tmp_path: Path) -> None:
    """Adaxes remove by DN, GUID and SID, add, move: undo restores all; pending and noop rows
    are not reversed."""
    state = make_state(adaxes_groups=3, adaxes_members=12)
    objects = state["adaxes"]["objects"]
    plain, other, third = [dn for dn, o in objects.items() if o["type"] == "group"]
    objects[third]["approval"] = True
    async with Sandbox(state) as sb:
        before = ax_groups(sb)
        movable = sorted(before[plain] - before[other])
        outsiders = sorted(dn for dn, o in objects.items() if o["type"] == "user"
                           and not any(dn in s for s in before.values()))
        assert len(movable) >= 5 and len(outsiders) >= 2
        rows = [
            {"op": "remove", "group": plain, "member": movable[0]},
            {"op": "remove", "group": objects[plain]["guid"],
             "member": objects[movable[1]]["guid"]},
            {"op": "remove", "group": plain, "member": objects[movable[2]]["sid"]},
            {"op": "move", "group": plain, "member": movable[3], "to_group": other},
            {"op": "add", "group": other, "member": outsiders[0]},
            {"op": "add", "group": third, "member": outsiders[1]},  # pending approval
            {"op": "remove", "group": plain, "member": outsiders[1]},  # noop
        ]
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows, fmt="jsonl")
        done = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert done.code == 0, done.stderr
        statuses = [o["status"] for _, o in sorted(last_outcomes(tmp_path / "results.jsonl")
                                                   .items())]
        assert statuses == ["ok"] * 5 + ["pending", "noop"]

        undo_file = tmp_path / "undo.jsonl"
        undone = invoke("undo", str(tmp_path / "results.jsonl"), "-o", str(undo_file))
        assert undone.exit_code == 0, undone.output
        assert undone.stderr == ""
        written = read_input(undo_file)
        assert sorted(r.op for r in written) == ["add"] * 3 + ["move", "remove"]
        assert all(r.group != third for r in written)
        again = await run_undo_file(tmp_path / "undo-run", sb, undo_file, kind="adaxes")
        assert again.code == 0, again.stderr
        assert ax_groups(sb) == before


async def test_adaxes_move_all_and_move_into_a_group_already_holding_them(
    tmp_path: Path,
) -> None:
    """Adaxes move_all with members already in the destination, and a move of a member
    already there: undo puts back only what left and takes out only what joined."""
    state = make_state(adaxes_groups=4, adaxes_members=12)
    objects = state["adaxes"]["objects"]
    g0, g1, g2, g3 = [dn for dn, o in objects.items() if o["type"] == "group"]
    async with Sandbox(state) as sb:
        before = ax_groups(sb)
        assert before[g0] & before[g1]
        both23 = sorted((before[g2] & before[g3]) - before[g0] - before[g1])
        assert both23
        rows = [
            {"op": "move_all", "group": g0, "to_group": g1},
            {"op": "move", "group": g2, "member": both23[0], "to_group": g3},
        ]
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows)
        done = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert done.code == 0, done.stderr
        line = last_outcomes(tmp_path / "results.jsonl")[1]
        if line.get("left") is None:
            pytest.xfail(NO_LEFT)
        undo_file = tmp_path / "undo.csv"
        undone = invoke("undo", str(tmp_path / "results.jsonl"), "-o", str(undo_file))
        assert undone.exit_code == 0, undone.output
        again = await run_undo_file(tmp_path / "undo-run", sb, undo_file, kind="adaxes")
        assert again.code == 0, again.stderr
        assert ax_groups(sb) == before


async def test_docspace_without_precheck_warns_with_the_count(tmp_path: Path) -> None:
    """precheck = false on DocSpace: a removal of a non-member is recorded ok, and undo warns
    on stderr naming how many removals it would add back."""
    # No terminated accounts (they cannot be added back; not what this test is about).
    state = make_state(docspace_groups=2, docspace_members=10, terminated=0)
    users = state["docspace"]["users"]
    async with Sandbox(state) as sb:
        before = ds_groups(sb)
        g0, g1 = list(before)
        members = sorted(before[g0])
        outsider = sorted(u for u in users if not any(u in s for s in before.values()))[0]
        rows = [
            {"op": "remove", "group": g0, "member": members[0]},
            {"op": "remove", "group": g0, "member": members[1]},
            {"op": "remove", "group": g0, "member": outsider},  # not a member, still "ok"
            {"op": "add", "group": g1, "member": members[0]},
        ]
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        assert {o["status"] for o in last_outcomes(tmp_path / "results.jsonl").values()} == {"ok"}
    undo_file = tmp_path / "undo.csv"
    undone = invoke("undo", str(tmp_path / "results.jsonl"), "-o", str(undo_file))
    assert undone.exit_code == 0, undone.output
    assert "precheck = false" in undone.stderr
    assert "3 remove rows" in undone.stderr and "1 add/move rows" in undone.stderr
    assert str(undo_file) in undone.stderr
    assert len(read_input(undo_file)) == 4  # still written, as asked
