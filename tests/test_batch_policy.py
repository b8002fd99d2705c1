"""Which waiting batch gets the next slot (pure, no server), and the batcher around it with a
gate the test opens one turn at a time: batches keep taking rows until their slot comes."""

from __future__ import annotations

import asyncio

import pytest

from bulkgroups.http.transport import Reply
from bulkgroups.model import Abandoned
from bulkgroups.targets.batcher import Batcher
from bulkgroups.targets.batchpolicy import BatchQueue


def queue(size: int = 4, max_wait_s: float = 10.0) -> BatchQueue[str, int]:
    return BatchQueue(size=size, max_wait_s=max_wait_s)


def test_the_fullest_batch_goes_first() -> None:
    q = queue()
    for key, n in (("a", 1), ("b", 3), ("c", 2)):
        for i in range(n):
            q.add(key, i, now=0.0)
    order = []
    while (b := q.pop_next(now=1.0)) is not None:
        order.append((b.key, len(b.items)))
    assert order == [("b", 3), ("c", 2), ("a", 1)]
    assert q.rows == 0 and len(q) == 0


def test_a_full_batch_closes_and_the_next_row_opens_another() -> None:
    q = queue(size=3)
    for i in range(7):
        q.add("a", i, now=float(i))
    batches = [q.pop_next(now=7.0) for _ in range(3)]
    assert [b.items if b else None for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert q.pop_next(now=7.0) is None


def test_full_batches_go_oldest_first() -> None:
    q = queue(size=2)
    for key in ("x", "y", "z"):
        q.add(key, 0, now=0.0)
        q.add(key, 1, now=0.0)
    assert [q.pop_next(now=1.0).key for _ in range(3)] == ["x", "y", "z"]  # type: ignore[union-attr]


def test_a_batch_waiting_past_the_age_bound_goes_before_fuller_ones() -> None:
    q = queue(size=4, max_wait_s=5.0)
    q.add("small", 0, now=0.0)
    for i in range(4):
        q.add("full", i, now=4.0)
    first = q.pop_next(now=4.5)
    assert first is not None and first.key == "full"  # not yet waited long: fullest wins
    q2 = queue(size=4, max_wait_s=5.0)
    q2.add("small", 0, now=0.0)
    for i in range(4):
        q2.add("full", i, now=4.0)
    first = q2.pop_next(now=5.0)
    assert first is not None and first.key == "small"


def test_drain_takes_everything() -> None:
    q = queue(size=2)
    for i in range(5):
        q.add(f"k{i % 2}", i, now=0.0)
    assert sorted(len(b.items) for b in q.drain()) == [1, 2, 2]
    assert q.rows == 0 and q.pop_next(now=0.0) is None


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size"):
        BatchQueue(size=0, max_wait_s=1.0)


class Turns:
    """A gate that lets one request go per `open()`."""

    def __init__(self) -> None:
        self._turns: asyncio.Queue[None] = asyncio.Queue()
        self.waiting = asyncio.Event()

    def open(self, n: int = 1) -> None:
        for _ in range(n):
            self._turns.put_nowait(None)

    async def ready(self) -> None:
        self.waiting.set()
        await self._turns.get()
        self.waiting.clear()


async def test_rows_keep_joining_while_the_batch_waits_for_its_slot() -> None:
    """Shuffled rows of three groups, slots closed: when the slots open, every request is
    full, although the rows came interleaved with the others' and over many loop turns."""
    sent: list[tuple[str, int]] = []
    turns = Turns()

    async def send(method: str, group: str, members: list[str]) -> Reply:
        sent.append((group, len(members)))
        return Reply(200, None, 1)

    batcher = Batcher(send, size=10, gate=turns, max_in_flight=2)
    rows = [(f"g{i % 3}", f"m{i}") for i in range(30)]
    tasks = []
    for group, member in rows:
        tasks.append(asyncio.create_task(batcher.submit("DELETE", group, member)))
        await asyncio.sleep(0)  # one row a loop turn, as a reader delivers them
    await turns.waiting.wait()
    assert batcher.waiting == 30
    turns.open(3)
    replies = await asyncio.gather(*tasks)
    assert sorted(sent) == [("g0", 10), ("g1", 10), ("g2", 10)]
    assert all(r.status == 200 for r in replies)


async def test_requests_in_flight_never_pass_the_cap() -> None:
    in_flight = peak = 0
    release = asyncio.Event()

    async def send(method: str, group: str, members: list[str]) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return Reply(200, None, 1)

    batcher = Batcher(send, size=5, max_in_flight=3)
    tasks = [asyncio.create_task(batcher.submit("DELETE", f"g{i % 7}", f"m{i}"))
             for i in range(70)]
    while in_flight < 3:
        await asyncio.sleep(0)
    for _ in range(20):
        await asyncio.sleep(0)
    assert peak == 3
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 3


async def test_a_400_on_a_full_batch_still_isolates_the_bad_rows() -> None:
    """A batch filled while waiting is refused for two bad members: halving finds exactly
    those two; the others get the 200."""
    turns = Turns()

    async def send(method: str, group: str, members: list[str]) -> Reply:
        bad = {"bad1", "bad2"} & set(members)
        return Reply(400, None, 1) if bad else Reply(200, None, 1)

    batcher = Batcher(send, size=32, gate=turns, max_in_flight=4)
    members = [f"m{i}" for i in range(30)] + ["bad1", "bad2"]
    tasks = [asyncio.create_task(batcher.submit("PUT", "g", m)) for m in members]
    await turns.waiting.wait()
    turns.open()
    replies = await asyncio.gather(*tasks)
    status = dict(zip(members, (r.status for r in replies), strict=True))
    assert {m for m, s in status.items() if s == 400} == {"bad1", "bad2"}


async def test_abandon_answers_every_waiting_row_and_refuses_new_ones() -> None:
    turns = Turns()
    sent: list[list[str]] = []

    async def send(method: str, group: str, members: list[str]) -> Reply:
        sent.append(members)
        return Reply(200, None, 1)

    batcher = Batcher(send, size=10, gate=turns)
    tasks = [asyncio.create_task(batcher.submit("DELETE", "g", f"m{i}")) for i in range(5)]
    await turns.waiting.wait()
    batcher.abandon()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Abandoned) for r in results)
    with pytest.raises(Abandoned):
        await batcher.submit("DELETE", "g", "late")
    assert sent == []
