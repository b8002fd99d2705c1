"""DocSpace batching: many rows share one list request; each still gets its own outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bulkgroups.http.transport import Reply
from bulkgroups.sandbox import Sandbox, make_state
from bulkgroups.targets.batcher import Batcher
from tests.support import last_outcomes, run_cli, write_job


def groups_of(sb: Sandbox) -> dict[str, set[str]]:
    return {g: set(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


async def test_batcher_fills_to_size_and_sends_the_rest_at_once() -> None:
    """Full batches go first; the partial rest goes as soon as a slot is free; all get answers."""
    sent: list[list[str]] = []

    async def send(method: str, group: str, members: list[str]) -> Reply:
        sent.append(members)
        return Reply(200, {"members": members}, 1)

    batcher = Batcher(send, size=4)
    replies = await asyncio.gather(*(batcher.submit("DELETE", "g", f"m{i}") for i in range(10)))
    assert [len(b) for b in sent] == [4, 4, 2]
    assert all(r.status == 200 for r in replies)


async def test_batcher_keeps_groups_and_verbs_apart() -> None:
    """Members of other groups or another verb never share a request."""
    sent: list[tuple[str, str, list[str]]] = []

    async def send(method: str, group: str, members: list[str]) -> Reply:
        sent.append((method, group, members))
        return Reply(200, None, 1)

    batcher = Batcher(send, size=10)
    await asyncio.gather(
        batcher.submit("DELETE", "a", "1"), batcher.submit("PUT", "a", "2"),
        batcher.submit("DELETE", "b", "3"), batcher.submit("DELETE", "a", "4"),
    )
    assert sorted(sent) == [("DELETE", "a", ["1", "4"]), ("DELETE", "b", ["3"]),
                            ("PUT", "a", ["2"])]


async def test_a_400_is_split_until_only_the_rows_at_fault_fail() -> None:
    """A batch refused for one bad member is halved until that member alone is refused."""
    calls = 0

    async def send(method: str, group: str, members: list[str]) -> Reply:
        nonlocal calls
        calls += 1
        return Reply(400, None, 1) if "bad" in members else Reply(200, None, 1)

    batcher = Batcher(send, size=16)
    members = [f"m{i}" for i in range(15)] + ["bad"]
    replies = await asyncio.gather(*(batcher.submit("PUT", "g", m) for m in members))
    statuses = dict(zip(members, (r.status for r in replies), strict=True))
    assert statuses.pop("bad") == 400
    assert set(statuses.values()) == {200}
    assert calls <= 1 + 2 * 4  # one try, then two halves a level, four levels deep


async def test_batched_run_ends_in_the_exact_state_with_few_requests(tmp_path: Path) -> None:
    """400 removals, adds and moves go as a handful of list requests; every row ok, state exact."""
    state = make_state(docspace_groups=3, docspace_members=300)
    async with Sandbox(state) as sb:
        before = groups_of(sb)
        g0, g1, g2 = list(before)
        users = state["docspace"]["users"]
        removals = sorted(before[g0])[:250]
        movers = sorted(m for m in before[g1] - before[g2] if users[m]["kind"] == "user")[:100]
        adds = sorted(u for u in users if users[u]["kind"] == "user" and u not in before[g0])[:50]
        rows = [{"op": "remove", "group": g0, "member": m} for m in removals]
        rows += [{"op": "move", "group": g1, "member": m, "to_group": g2} for m in movers]
        rows += [{"op": "add", "group": g0, "member": u} for u in adds]
        job = write_job(tmp_path, sb, rows=rows, limits={"batch_size": 50, "concurrency": 5})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        writes = [e for e in sb.log if e.method != "GET"]
        assert len(writes) <= 40  # 400 rows, 500 member changes
        assert groups_of(sb) == {
            g0: (before[g0] - set(removals)) | set(adds),
            g1: before[g1] - set(movers),
            g2: before[g2] | set(movers),
        }
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert len(outcomes) == len(rows)
    assert {o["status"] for o in outcomes.values()} == {"ok"}
