"""Duplicate rows: done once, later copies `noop` naming the first; bounded memory; end to end
through the CLI against the sandbox (one request per distinct row, resume, max_changes)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkgroups.engine import Pipeline
from bulkgroups.identity import norm_id
from bulkgroups.model import InvalidRow, Op, Outcome, Result, Row, SkippedRow, Status
from bulkgroups.rows.dedupe import MAX_ROW, FirstSeen, dedupe
from bulkgroups.sandbox import Sandbox, make_state
from tests.support import last_outcomes, run_cli, write_job

A = "0f8fad5b-d9cb-469f-a165-70867728950e"
B = "1f8fad5b-d9cb-469f-a165-70867728950e"
C = "2f8fad5b-d9cb-469f-a165-70867728950e"
DN = "CN=Lee\\, Ann,OU=Users,DC=example,DC=com"
GROUP_DN = "CN=Sales,OU=Groups,DC=example,DC=com"


def r(row: int, op: Op, group: str, member: str = "", to_group: str = "") -> Row:
    return Row(row=row, line=row + 1, op=op, group=group, member=member, to_group=to_group)


def kinds(items: list[Row | InvalidRow | SkippedRow]) -> list[tuple[int, str]]:
    """(row, what came out): 'row', 'invalid', or a skipped row's reason."""
    out: list[tuple[int, str]] = []
    for item in items:
        if isinstance(item, SkippedRow):
            out.append((item.row, item.reason))
        else:
            out.append((item.row, "row" if isinstance(item, Row) else "invalid"))
    return out


# -- the filter ---------------------------------------------------------------------------------


def test_later_copies_become_noop_naming_the_first() -> None:
    """The first row passes as it is; each later copy is a noop 'duplicate of row N'."""
    rows = [
        r(1, Op.REMOVE, A, B),
        r(2, Op.REMOVE, A, C),
        r(3, Op.REMOVE, A, B),
        r(4, Op.ADD, A, B),  # another op: not a duplicate
        r(5, Op.REMOVE, A, B),
        r(6, Op.MOVE_ALL, A, "", C),
        r(7, Op.MOVE_ALL, A, "", C),
    ]
    out = list(dedupe(rows))
    assert kinds(out) == [
        (1, "row"), (2, "row"), (3, "duplicate of row 1"), (4, "row"),
        (5, "duplicate of row 1"), (6, "row"), (7, "duplicate of row 6"),
    ]
    dup = out[2]
    assert dup == SkippedRow(3, 4, Op.REMOVE, A, B, "", "duplicate of row 1", Status.NOOP)
    assert out[0] is rows[0]


def test_ids_compare_as_norm_id_sees_them() -> None:
    """Case, braces around a GUID and DN spacing do not make a row different."""
    guid = "6B1E3C2A-8F4D-4E5B-9A7C-1D2E3F4A5B6C"
    rows = [
        r(1, Op.REMOVE, A, B),
        r(2, Op.REMOVE, A.upper(), B.upper()),
        r(3, Op.REMOVE, GROUP_DN, DN),
        r(4, Op.REMOVE, "cn=sales, ou=groups, dc=example, dc=com",
          "CN=Lee\\2C Ann,OU=Users,DC=example,DC=com"),
        r(5, Op.MOVE, GROUP_DN, guid, "S-1-5-21-1-2"),
        r(6, Op.MOVE, GROUP_DN, "{" + guid.lower() + "}", "s-1-5-21-1-2"),
    ]
    assert [k for _, k in kinds(list(dedupe(rows)))] == [
        "row", "duplicate of row 1", "row", "duplicate of row 3", "row", "duplicate of row 5",
    ]
    # The noop keeps the row as it was written, not the normalised form.
    skipped = list(dedupe(rows))[1]
    assert isinstance(skipped, SkippedRow) and skipped.group == A.upper()


def test_invalid_rows_are_never_deduplicated() -> None:
    """Identical invalid rows each stay invalid, and do not count as a first occurrence."""
    bad = InvalidRow(1, 2, "member: not a UUID", "remove", A, "x")
    items: list[Row | InvalidRow] = [bad, InvalidRow(2, 3, "member: not a UUID", "remove", A, "x"),
                                     InvalidRow(3, 4, "protected", "remove", A, B),
                                     r(4, Op.REMOVE, A, B), r(5, Op.REMOVE, A, B)]
    assert kinds(list(dedupe(items))) == [
        (1, "invalid"), (2, "invalid"), (3, "invalid"), (4, "row"), (5, "duplicate of row 4"),
    ]


def test_parts_cannot_run_into_each_other() -> None:
    """A DN whose escapes hold what looks like the next column is not a copy of a split row."""
    # norm_id decodes \\1f to a raw U+001F, the kind of separator a naive key would use.
    rows = [
        r(1, Op.MOVE, "CN=a\\1fs-1-5-21-1", "CN=c", "S-1-5-21-2"),
        r(2, Op.MOVE, "CN=a", "S-1-5-21-1", "CN=c\\1fs-1-5-21-2"),
    ]
    naive = ["\x1f".join(map(norm_id, (x.group, x.member, x.to_group))) for x in rows]
    assert naive[0] == naive[1]
    assert kinds(list(dedupe(rows))) == [(1, "row"), (2, "row")]


def test_filter_streams() -> None:
    """Rows come out as they go in: the filter never reads ahead of what it yields."""
    pulled = 0

    def source() -> Iterator[Row]:
        nonlocal pulled
        for i in range(1, 1_000_000):
            pulled += 1
            yield r(i, Op.REMOVE, A, f"{i:08x}-d9cb-469f-a165-70867728950e")

    out = dedupe(source())
    assert [next(out).row for _ in range(3)] == [1, 2, 3]
    assert pulled == 3


_IDS = st.sampled_from([A, B, C, A.upper(), B.upper(), ""])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Op)), _IDS, _IDS, _IDS, st.booleans()),
                max_size=60))
def test_matches_a_dictionary_of_first_rows(
    specs: list[tuple[Op, str, str, str, bool]],
) -> None:
    """Against a plain dict keyed by (op, norm_id...): the same rows kept, the same first rows."""
    items: list[Row | InvalidRow] = []
    for i, (op, g, m, t, valid) in enumerate(specs, 1):
        items.append(r(i, op, g, m, t) if valid else InvalidRow(i, i + 1, "bad", op.value, g, m, t))
    first: dict[tuple[str, ...], int] = {}
    expected: list[tuple[int, str]] = []
    for item in items:
        if isinstance(item, InvalidRow):
            expected.append((item.row, "invalid"))
            continue
        key = (item.op.value, norm_id(item.group), norm_id(item.member), norm_id(item.to_group))
        if key in first:
            expected.append((item.row, f"duplicate of row {first[key]}"))
        else:
            first[key] = item.row
            expected.append((item.row, "row"))
    assert kinds(list(dedupe(items))) == expected


# -- the table ----------------------------------------------------------------------------------


def test_table_keeps_hashes_that_share_a_slot_apart() -> None:
    """Hashes equal in their probe bits, or in their upper 64 bits, are still different."""
    table = FirstSeen(capacity=8)
    same_slot = [(i << 40) | 5 for i in range(1, 6)]  # one start slot, different hashes
    for row, hi in enumerate(same_slot, 1):
        assert table.first(hi, 0, row) is None
    assert [table.first(hi, 0, 99) for hi in same_slot] == [1, 2, 3, 4, 5]
    assert table.first(7, 1, 10) is None
    assert table.first(7, 2, 11) is None  # same upper 64 bits, other lower 32
    assert table.first(7, 1, 12) == 10


def test_table_grows_and_remembers_everything() -> None:
    """Past 3/4 full the table doubles; every hash still finds its first row."""
    table = FirstSeen(capacity=8)
    hashes = [((i * 0x9E3779B97F4A7C15) & ((1 << 64) - 1), i & 0xFF) for i in range(5000)]
    for row, (hi, lo) in enumerate(hashes, 1):
        assert table.first(hi, lo, row) is None
    assert len(table) == 5000
    assert table.slots == 8192 and 4 * len(table) <= 3 * table.slots
    assert table.nbytes == 16 * table.slots
    assert all(table.first(hi, lo, 0) == row for row, (hi, lo) in enumerate(hashes, 1))


def test_table_moves_clusters_that_wrap_past_the_last_slot() -> None:
    """Growth moves the old slots from the top down and gives the old table back as it goes:
    a cluster whose home is the last slot wraps to the first ones, and across four doublings
    with many rows of such hashes (and ordinary ones between) every hash keeps its row."""
    rng = random.Random(9)
    wrapping = [((rng.getrandbits(40) << 24) | 0xFFFFFF, rng.getrandbits(32)) for _ in range(300)]
    plain = [(rng.getrandbits(64), rng.getrandbits(32)) for _ in range(3000)]
    hashes = wrapping + plain
    rng.shuffle(hashes)
    table = FirstSeen(capacity=256)
    for row, (hi, lo) in enumerate(hashes, 1):
        assert table.first(hi, lo, row) is None
    assert table.slots == 8192
    assert all(table.first(hi, lo, 0) == row for row, (hi, lo) in enumerate(hashes, 1))


def test_rows_past_32_bits_are_named_less_exactly() -> None:
    """A first row past the 32-bit range is remembered; its copy says 'an earlier row'."""
    big = MAX_ROW + 10
    out = list(dedupe([r(big, Op.REMOVE, A, B), r(big + 1, Op.REMOVE, A, B)]))
    assert kinds(out) == [(big, "row"), (big + 1, "duplicate of an earlier row")]


_CHILD = """
import sys, time
from bulkgroups.rows.dedupe import dedupe
from tests.peak import peak_rss_kib
from bulkgroups.model import Op, Row

A = "0f8fad5b-d9cb-469f-a165-70867728950e"
n = int(sys.argv[1])
rows = (Row(i, i + 1, Op.REMOVE, A, f"{i:08x}-d9cb-469f-a165-{i:012x}") for i in range(1, n + 1))
before = peak_rss_kib()
start = time.perf_counter()
kept = sum(1 for item in dedupe(rows) if type(item) is Row)
elapsed = time.perf_counter() - start
print(kept, peak_rss_kib() - before, elapsed)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_a_million_distinct_rows_in_bounded_memory() -> None:
    """A million distinct rows through the filter in a fresh interpreter: its peak memory
    grows by under 64 MiB (a set of the keys as strings takes about 170 MB), in seconds."""
    n = 1_000_000
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n)], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(root)}, timeout=120,
    ).stdout.split()
    kept, grown_kib, elapsed = int(out[0]), int(out[1]), float(out[2])
    assert kept == n
    assert grown_kib < 64 * 1024, f"peak memory grew by {grown_kib} KiB"
    assert elapsed < 60, f"{elapsed:.1f} s"


# -- the engine -----------------------------------------------------------------------------


class CountingTarget:
    def __init__(self) -> None:
        self.rows: list[int] = []

    def abandon(self) -> None:

        pass


    async def apply(self, row: Row) -> Result:
        self.rows.append(row.row)
        return Result(Status.OK, http_status=200, attempts=1)


async def test_pipeline_settles_skipped_rows_without_the_target() -> None:
    """A SkippedRow becomes a noop outcome with its reason, and the target never sees it."""
    outcomes: list[Outcome] = []
    target = CountingTarget()
    pipe = Pipeline(target=target, sink=outcomes.extend, workers=2)
    rows = [r(1, Op.REMOVE, A, B), r(2, Op.REMOVE, A, C), r(3, Op.REMOVE, A, B)]
    tally = await pipe.run(dedupe(rows))
    assert sorted(target.rows) == [1, 2]
    by_row = {o.row: o for o in outcomes}
    dup = by_row[3]
    assert (dup.status, dup.error, dup.attempts, dup.http_status) == (
        Status.NOOP, "duplicate of row 1", 0, None)
    assert (dup.line, dup.op, dup.group, dup.member, dup.key) == (4, "remove", A, B, rows[2].key)
    assert tally.counts()["noop"] == 1 and tally.counts()["ok"] == 2


# -- end to end ---------------------------------------------------------------------------------


def _members(sb: Sandbox) -> tuple[str, list[str]]:
    groups = sb.dump()["docspace"]["groups"]
    g0 = next(iter(groups))
    return g0, sorted(groups[g0]["members"])


async def test_cli_run_sends_each_distinct_row_once(tmp_path: Path) -> None:
    """Duplicates, also in other spellings, are noop 'duplicate of row N' and send nothing."""
    async with Sandbox(make_state()) as sb:
        g0, members = _members(sb)
        m0, m1, m2 = members[:3]
        rows = [
            {"op": "remove", "group": g0, "member": m0},
            {"op": "remove", "group": g0, "member": m1},
            {"op": "remove", "group": g0.upper(), "member": m0.upper()},
            {"op": "remove", "group": g0, "member": m0},
            {"op": "remove", "group": g0, "member": "not-a-uuid"},
            {"op": "remove", "group": g0, "member": "not-a-uuid"},
            {"op": "remove", "group": g0, "member": m2},
            {"op": "remove", "group": g0, "member": m1},
        ]
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 1, done.stderr  # the two invalid rows
        deletes = [e for e in sb.log if e.method == "DELETE"]
        assert len(deletes) == 3
        assert set(_members(sb)[1]) == set(members) - {m0, m1, m2}
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    got = {row: (o["status"], o["error"]) for row, o in outcomes.items()}
    assert got == {
        1: ("ok", None), 2: ("ok", None), 3: ("noop", "duplicate of row 1"),
        4: ("noop", "duplicate of row 1"), 5: ("invalid", "member: not a UUID"),
        6: ("invalid", "member: not a UUID"), 7: ("ok", None), 8: ("noop", "duplicate of row 2"),
    }
    assert outcomes[3]["line"] == 4 and outcomes[3]["attempts"] == 0
    assert outcomes[3]["group"] == g0.upper()  # as written


async def test_duplicates_do_not_count_against_max_changes(tmp_path: Path) -> None:
    """Ten copies of two rows are two changes: a max_changes of 2 lets the run go."""
    async with Sandbox(make_state()) as sb:
        g0, members = _members(sb)
        rows = [{"op": "remove", "group": g0, "member": members[i % 2]} for i in range(10)]
        job = write_job(tmp_path, sb, rows=rows, safety={"max_changes": 2})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
    statuses = [o["status"] for _, o in sorted(last_outcomes(tmp_path / "results.jsonl").items())]
    assert statuses == ["ok", "ok"] + ["noop"] * 8


async def test_resume_sends_the_failed_first_row_but_not_its_duplicate(tmp_path: Path) -> None:
    """The first copy failed, its duplicate is a final noop: resume re-sends only the first."""
    async with Sandbox(make_state()) as sb:
        g0, members = _members(sb)
        rows = [{"op": "remove", "group": g0, "member": members[0]},
                {"op": "remove", "group": g0, "member": members[0]}]
        job = write_job(tmp_path, sb, rows=rows,
                        limits={"precheck": False, "max_retries": 0, "concurrency": 1})
        sb.inject(status=500, count=1)
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 1, done.stderr
        results = tmp_path / "results.jsonl"
        assert [o["status"] for _, o in sorted(last_outcomes(results).items())] == [
            "failed", "noop"]
        sb.clear_log()
        done = await run_cli("resume", str(results), "--quiet")
        assert done.code == 0, done.stderr
        assert [(e.method, e.status) for e in sb.log] == [("DELETE", 200)]
        assert members[0] not in _members(sb)[1]
    lines = (tmp_path / "results.jsonl").read_bytes().splitlines()
    assert len(lines) == 3  # the failed line, the noop, the resumed ok
    final = last_outcomes(tmp_path / "results.jsonl")
    assert (final[1]["status"], final[2]["status"], final[2]["error"]) == (
        "ok", "noop", "duplicate of row 1")


async def test_resume_after_a_crash_still_knows_the_duplicates(tmp_path: Path) -> None:
    """A copy that never got an outcome is still a duplicate on resume: the first row's
    outcome alone does not make it the first."""
    async with Sandbox(make_state()) as sb:
        g0, members = _members(sb)
        rows = [{"op": "remove", "group": g0, "member": members[0]},
                {"op": "remove", "group": g0, "member": members[1]},
                {"op": "remove", "group": g0, "member": members[0]}]
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False})
        results = tmp_path / "results.jsonl"
        # A run that finished rows 1 and 2 and died before row 3.
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        lines = results.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if b'"row":3,' not in line]
        assert len(kept) == 2
        results.write_bytes(b"".join(kept))
        sb.clear_log()
        done = await run_cli("resume", str(results), "--quiet")
        assert done.code == 0, done.stderr
        assert sb.log == []
    final = last_outcomes(results)
    assert (final[3]["status"], final[3]["error"]) == ("noop", "duplicate of row 1")
