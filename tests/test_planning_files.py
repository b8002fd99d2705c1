"""The plan file, the group guard and group snapshots: pure pieces, tested without a server."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest

from bulkgroups.planning.group_guard import over_limit, refusal_text
from bulkgroups.planning.planfile import (
    PlanFileError,
    PlanHeader,
    PlannedRow,
    read_header,
    read_rows,
    write_plan,
)
from bulkgroups.planning.snapshot import (
    GroupSnapshot,
    SnapMember,
    SnapshotWriter,
    read_snapshots,
    snapshot_path,
)
from bulkgroups.targets.decision import Fact

HEADER = PlanHeader(
    job="/jobs/j.toml", job_sha256="ab" * 32, target={"kind": "docspace", "base_url": "http://x"},
    input="/jobs/in.csv", input_fingerprint={"size": 10, "sha256": "cd" * 32},
    read_at="2026-12-01T00:00:00Z", groups={"g1": {"digest": "d1", "size": 3}},
    counts={"change": 1, "already": 1},
)
ROWS = [
    PlannedRow(1, 2, "remove", "g1", "m1", "", "change",
               pre=(Fact("g1", "m1", present=True),)),
    PlannedRow(2, 3, "remove", "g1", "m9", "", "already", reason="member not in group"),
    PlannedRow(3, 4, "move_all", "g1", "", "g2", "change", pre=(Fact("g1", "", present=True),)),
]


def test_plan_round_trips_and_is_owner_only(tmp_path: Path) -> None:
    p = tmp_path / "plan.jsonl"
    assert write_plan(p, HEADER, ROWS) == 3
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert read_header(p) == HEADER
    assert list(read_rows(p)) == ROWS


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "is empty"),
    (b"op,group,member\nremove,g,m\n", "not JSON"),
    (b'{"row": 1}\n', "not a bulkgroups plan file"),
    (None, "line cut short"),
    (b"HEADER\n" + b'{"row": 1, "line": 2, "decision": "maybe", "op": "remove", "group": "g",'
     b' "member": "m", "to_group": ""}\n', "unknown decision"),
    (b"HEADER\n" + b'{"row": 0, "line": 2, "decision": "change", "op": "remove", "group": "g",'
     b' "member": "m", "to_group": ""}\n', "positive integers"),
])
def test_a_broken_plan_is_refused_naming_file_and_line(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    p = tmp_path / "plan.jsonl"
    write_plan(p, HEADER, ROWS)
    if content is None:
        p.write_bytes(p.read_bytes()[:-5])
    else:
        header = p.read_bytes().split(b"\n", 1)[0]
        p.write_bytes(content.replace(b"HEADER", header))
    def read_all() -> None:
        read_header(p)
        list(read_rows(p))

    with pytest.raises(PlanFileError) as e:
        read_all()
    assert str(p) in str(e.value)
    assert problem in str(e.value)


def test_group_guard_counts_only_big_groups_over_the_share() -> None:
    sizes = {"big": 100, "small": 5, "half": 20}
    removals = {"big": 80, "small": 5, "half": 10, "unread": 50}
    over = over_limit(removals, sizes, max_share=0.5, min_size=10)
    assert [(g.group, g.size, g.removing) for g in over] == [("big", 100, 80)]
    text = refusal_text(over, max_share=0.5, names={"big": "Sales"})
    assert "Sales (big): would remove 80 of 100 members (80%)" in text
    assert over_limit(removals, sizes, max_share=0.8, min_size=10) == []


def _snap(group: str, *ids: str) -> GroupSnapshot:
    return GroupSnapshot(group, "t", tuple(SnapMember(i) for i in ids), hidden_unknown=True)


def test_snapshots_keep_the_first_state_and_survive_a_torn_tail(tmp_path: Path) -> None:
    p = snapshot_path(tmp_path / "r.jsonl")
    assert p.name == "r.snapshot.jsonl.gz"
    w = SnapshotWriter(p)
    w.add("k1", _snap("g1", "a", "b"))
    w.add("k1", _snap("g1", "changed"))  # a later read of the same group is not kept
    w.add("k2", GroupSnapshot("g2", "t", (SnapMember("x", ("S-1-5-1",), "guest"),), False))
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    whole = p.read_bytes()
    with p.open("ab") as f:  # a crash half-way through a third append
        f.write(gzip.compress(b'{"key": "k3", "group": "g3", "members": []}\n')[:-6])
    snaps = read_snapshots(p)
    assert set(snaps) == {"k1", "k2"}
    assert [m.id for m in snaps["k1"].members] == ["a", "b"]
    assert snaps["k2"].members[0] == SnapMember("x", ("S-1-5-1",), "guest")
    assert snaps["k1"].hidden_unknown and not snaps["k2"].hidden_unknown
    # A resumed run knows what the file holds and adds only new groups.
    w2 = SnapshotWriter(p, seen=read_snapshots(p))
    assert w2.has("k1") and not w2.has("k3")
    assert len(p.read_bytes()) > len(whole)
    assert read_snapshots(tmp_path / "none.gz") == {}
    os.chmod(p, 0o600)


def test_restore_reverses_only_what_changed_and_lists_what_cannot_be_put_back() -> None:
    from bulkgroups.identity import norm_id
    from bulkgroups.planning.restore import changes_of, restore

    snaps = {
        norm_id("G"): GroupSnapshot("G", "t", (SnapMember("a"), SnapMember("b"),
                                               SnapMember("g1", kind="guest")), True),
        norm_id("T"): GroupSnapshot("T", "t", (SnapMember("x"),), True),
    }
    changes = [
        *changes_of("remove", "G", "A", "", None, None),  # a member, other case: put back
        *changes_of("remove", "G", "zz", "", None, None),  # not listed: hidden terminated?
        *changes_of("move", "G", "b", "T", None, None),  # moved: moved back
        *changes_of("remove", "G", "g1", "", None, None),  # a guest: cannot be put back
        *changes_of("add", "T", "x", "", None, None),  # already there: changed nothing
        *changes_of("add", "T", "new", "", None, None),  # joined: taken out again
        *changes_of("remove", "Other", "q", "", None, None),  # no snapshot: results decide
    ]
    r = restore(changes, snaps, key=norm_id, kind="docspace")
    assert sorted(r.rows) == sorted([("add", "G", "A", ""), ("move", "T", "b", "G"),
                                     ("remove", "T", "new", "")])
    assert {(u.member, u.why.split(":")[0]) for u in r.cannot} == {
        ("zz", "not listed before the run"), ("g1", "a guest")}
    assert r.unchanged == 1
    assert [c.member for c in r.unsnapped] == ["q"]
    # Adaxes puts guests back like anyone and a member not listed was not a member.
    ad = restore(changes, snaps, key=norm_id, kind="adaxes")
    assert ("add", "G", "g1", "") in ad.rows
    assert all(u.member != "zz" for u in ad.cannot) and ad.unchanged == 2


def test_stale_reason_compares_the_plan_with_the_fresh_decision() -> None:
    from bulkgroups.model import Op
    from bulkgroups.planning.checks import CheckedRow, stale_reason
    from bulkgroups.targets.decision import Decision, Kind

    planned = CheckedRow(1, 2, Op.REMOVE, "G", "m", pre=(Fact("G", "m", present=True),))
    gone = Decision(Kind.ALREADY, precondition=(Fact("G", "m", present=False),))
    still = Decision(Kind.CHANGE, precondition=(Fact("G", "m", present=True),))
    assert stale_reason(planned, still) is None
    assert stale_reason(planned, gone) == "member already left group G after the plan"
    add = CheckedRow(1, 2, Op.ADD, "G", "m", pre=(Fact("G", "m", present=False),))
    assert stale_reason(add, Decision(Kind.ALREADY, precondition=(Fact("G", "m", True),))) \
        == "member joined group G after the plan"
    # A hidden member the fresh read cannot settle: sent, as a run would.
    assert stale_reason(planned, Decision(Kind.CHANGE, unsure="hidden")) is None
    # A resumed apply's own earlier change is no drift.
    resumed = CheckedRow(1, 2, Op.REMOVE, "G", "m", pre=planned.pre, resumed=True)
    assert stale_reason(resumed, gone) is None
    from bulkgroups.model import Row
    assert stale_reason(Row(1, 2, Op.REMOVE, "G", "m"), gone) is None
