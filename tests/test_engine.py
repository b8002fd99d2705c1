"""The pipeline on its own: an in-memory target stands in for the network, since the engine
knows nothing of HTTP (the end-to-end tests drive it against the real sandbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from bulkgroups.engine import Pipeline, StopReason
from bulkgroups.http.auth import AuthRefused
from bulkgroups.model import InvalidRow, Op, Outcome, Result, Row, Status


def make_rows(n: int, *, bad_every: int = 0) -> Iterator[Row | InvalidRow]:
    for i in range(1, n + 1):
        if bad_every and i % bad_every == 0:
            yield InvalidRow(row=i, line=i + 1, reason="member: not a UUID", op="remove")
        else:
            yield Row(row=i, line=i + 1, op=Op.REMOVE, group="g", member=f"m{i}")


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def __call__(self, batch: list[Outcome]) -> None:
        self.outcomes.extend(batch)


class ListTarget:
    """Answers each row from a function of the row; can hold rows until released."""

    def __init__(self, answer: Result | None = None, *, gate: asyncio.Event | None = None) -> None:
        self.answer = answer or Result(Status.OK, http_status=200, attempts=1)
        self.gate = gate
        self.started = 0

    def abandon(self) -> None:

        pass


    async def apply(self, row: Row) -> Result:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.answer


async def test_every_row_gets_exactly_one_outcome() -> None:
    """Good rows and invalid rows alike end as one outcome each, invalid ones with reasons."""
    sink = Recorder()
    pipe = Pipeline(target=ListTarget(), sink=sink, workers=4)
    tally = await pipe.run(make_rows(1000, bad_every=10))
    assert sorted(o.row for o in sink.outcomes) == list(range(1, 1001))
    assert tally.counts()["ok"] == 900 and tally.counts()["invalid"] == 100
    bad = next(o for o in sink.outcomes if o.status is Status.INVALID)
    assert bad.error == "member: not a UUID" and bad.line == bad.row + 1 and bad.attempts == 0
    assert pipe.reason is StopReason.DONE


async def test_reader_never_runs_far_ahead_of_the_workers() -> None:
    """Backpressure: while the target holds every row, the reader stops after a bounded few."""
    pulled = 0

    def counting() -> Iterator[Row | InvalidRow]:
        nonlocal pulled
        for item in make_rows(100_000):
            pulled += 1
            yield item

    gate = asyncio.Event()
    target = ListTarget(gate=gate)
    pipe = Pipeline(target=target, sink=Recorder(), workers=4)
    task = asyncio.create_task(pipe.run(counting()))
    while target.started < 4:
        await asyncio.sleep(0)
    for _ in range(50):
        await asyncio.sleep(0)
    assert pulled < 200
    gate.set()
    await task
    assert pulled == 100_000


async def test_stop_lets_rows_in_flight_finish_and_starts_no_more() -> None:
    """After stop(), the rows already started finish with outcomes and no new row starts."""
    gate = asyncio.Event()
    target = ListTarget(gate=gate)
    sink = Recorder()
    pipe = Pipeline(target=target, sink=sink, workers=3)
    task = asyncio.create_task(pipe.run(make_rows(1000)))
    while target.started < 3:
        await asyncio.sleep(0)
    pipe.stop(StopReason.SIGTERM)
    gate.set()
    await task
    assert target.started == 3
    assert len(sink.outcomes) == 3
    assert pipe.reason is StopReason.SIGTERM


async def test_refused_credentials_stop_the_run_without_failing_rows() -> None:
    """AuthRefused from the target stops the run; the refused rows get no outcome at all."""

    class Refusing:
        calls = 0

        def abandon(self) -> None:

            pass


        async def apply(self, row: Row) -> Result:
            Refusing.calls += 1
            raise AuthRefused("the target refused the credentials (401): Unauthorized")

    sink = Recorder()
    pipe = Pipeline(target=Refusing(), sink=sink, workers=4)
    await pipe.run(make_rows(10_000))
    assert pipe.reason is StopReason.AUTH and "401" in pipe.detail
    assert sink.outcomes == []
    assert Refusing.calls <= 8


async def test_failure_ratio_aborts_once_enough_rows_finished() -> None:
    """With every row failing, the run stops soon after abort_min_rows rows finished."""
    sink = Recorder()
    failing = ListTarget(Result(Status.FAILED, http_status=503, attempts=6, error="503"))
    pipe = Pipeline(
        target=failing, sink=sink, workers=2, abort_failure_ratio=0.5, abort_min_rows=50
    )
    await pipe.run(make_rows(10_000))
    assert pipe.reason is StopReason.FAILURE_RATIO
    assert 50 <= len(sink.outcomes) < 200
    assert "50%" in pipe.detail


async def test_a_bug_in_one_row_fails_that_row_only() -> None:
    """An unexpected exception becomes a failed outcome naming the error type; others go on."""

    class Flaky:
        def abandon(self) -> None:
            pass

        async def apply(self, row: Row) -> Result:
            if row.row == 5:
                raise KeyError("boom")
            return Result(Status.OK, attempts=1)

    sink = Recorder()
    await Pipeline(target=Flaky(), sink=sink, workers=2).run(make_rows(10))
    by_row = {o.row: o for o in sink.outcomes}
    assert by_row[5].status is Status.FAILED and by_row[5].error == "internal error: KeyError"
    assert all(by_row[i].status is Status.OK for i in range(1, 11) if i != 5)


class FullDisk:
    """A sink that takes `room` outcomes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.outcomes: list[Outcome] = []

    def __call__(self, batch: list[Outcome]) -> None:
        if len(self.outcomes) + len(batch) > self.room:
            raise OSError(28, "No space left on device")
        self.outcomes.extend(batch)


async def test_an_unwritable_outcome_stops_the_run_and_nothing_blocks() -> None:
    """The sink fails: the run stops at once (RESULTS, "disk full"), abandons the target, and
    returns although 100,000 rows (invalid ones too) were still to come; nothing waits on a
    full queue."""

    class Counting(ListTarget):
        abandoned = 0

        def abandon(self) -> None:
            Counting.abandoned += 1

    target = Counting()
    sink = FullDisk(room=500)
    pipe = Pipeline(target=target, sink=sink, workers=50)
    await asyncio.wait_for(pipe.run(make_rows(100_000, bad_every=2)), timeout=30)
    assert pipe.reason is StopReason.RESULTS and pipe.detail == "disk full"
    assert Counting.abandoned == 1
    assert len(sink.outcomes) <= 500
    assert target.started < 5_000


async def test_room_made_after_a_failed_write_takes_the_rows_in_flight() -> None:
    """With make_room, the failed batch and the rows finishing after the stop are written."""
    gate = asyncio.Event()
    sink = FullDisk(room=0)

    def make_room() -> bool:
        sink.room = 10_000
        return True

    target = ListTarget(gate=gate)
    pipe = Pipeline(target=target, sink=sink, workers=8, make_room=make_room)
    task = asyncio.create_task(pipe.run(make_rows(1000, bad_every=1)))  # invalid rows first
    while pipe.reason is StopReason.DONE:
        await asyncio.sleep(0)
    gate.set()
    await task
    assert pipe.reason is StopReason.RESULTS
    assert sink.outcomes and all(o.status is Status.INVALID for o in sink.outcomes)


async def test_a_stop_gives_rows_in_flight_only_the_grace() -> None:
    """Rows that would wait forever (a long pause) are abandoned `stop_grace_s` after the stop:
    the run returns, and they have no outcome."""
    target = ListTarget(gate=asyncio.Event())  # never set
    sink = Recorder()
    pipe = Pipeline(target=target, sink=sink, workers=5, stop_grace_s=0.05)
    task = asyncio.create_task(pipe.run(make_rows(100)))
    while target.started < 5:
        await asyncio.sleep(0)
    pipe.stop(StopReason.SIGTERM)
    await asyncio.wait_for(task, timeout=5)
    assert sink.outcomes == [] and target.started == 5
