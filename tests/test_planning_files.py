"""The plan file, the group guard and group snapshots: pure pieces, tested without a server."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest

from bulkgroups.planning.group_guard import over_limit, refusal_text
from bulkgroups.planning.planfile import (
    Condition,
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

HEADER = PlanHeader(
    job="/jobs/j.toml", job_sha256="ab" * 32, target={"kind": "docspace", "base_url": "http://x"},
    input="/jobs/in.csv", input_fingerprint={"size": 10, "sha256": "cd" * 32},
    read_at="2026-12-01T00:00:00Z", groups={"g1": {"digest": "d1", "size": 3}},
    counts={"change": 1, "already": 1},
)
ROWS = [
    PlannedRow(1, 2, "remove", "g1", "m1", "", "change",
               pre=(Condition("g1", "m1", present=True),)),
    PlannedRow(2, 3, "remove", "g1", "m9", "", "already", reason="member not in group"),
    PlannedRow(3, 4, "move_all", "g1", "", "g2", "change", pre=(Condition("g1", digest="d1"),)),
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
