"""Adaptive pacing: quota headers parsed, the rate halved on 429 and climbing back, never above
the job's rate; and a run against a tight server window that stays inside it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bulkgroups.http.pacer import Pacer
from bulkgroups.http.quota import Quota, parse_quota
from bulkgroups.sandbox import Limits, Sandbox, SandboxConfig, make_state
from bulkgroups.sandbox.log import max_in_window
from tests.support import last_outcomes, run_cli, write_job


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Remaining": "40", "X-RateLimit-Reset": "20"}, Quota(40, 20)),
        ({"RateLimit-Remaining": "5", "RateLimit-Reset": "2"}, Quota(5, 2)),
        ({"RateLimit": "limit=100, remaining=50, reset=30"}, Quota(50, 30)),
        ({"RateLimit": '"default";r=7;t=3', "RateLimit-Policy": '"default";q=100;w=60'},
         Quota(7, 3)),
        ({"X-RateLimit-Remaining": "9", "X-RateLimit-Reset": "1700000010"}, Quota(9, 10)),
    ],
)
def test_quota_headers_are_read(headers: dict[str, str], expected: Quota) -> None:
    """Each header family gives remaining requests and seconds to reset (epoch resets too)."""
    assert parse_quota(headers, now=1_700_000_000) == expected


@pytest.mark.parametrize(
    "headers", [{}, {"X-RateLimit-Remaining": "3"}, {"RateLimit": "garbage"},
                {"X-RateLimit-Remaining": "x", "X-RateLimit-Reset": "1"}],
)
def test_no_or_broken_quota_headers_give_none(headers: dict[str, str]) -> None:
    """Incomplete or unreadable headers announce nothing rather than a wrong quota."""
    assert parse_quota(headers) is None


async def test_rate_halves_on_429_and_climbs_back_but_never_above_the_job() -> None:
    """AIMD: 429 halves, answers add 2 % of the job's rate, the ceiling holds, a floor too."""
    pacer = Pacer(rate=100, concurrency=4)
    pacer.limited()
    assert pacer.rate == 50
    for _ in range(10):
        pacer.answered(None)
    assert pacer.rate == pytest.approx(70)
    for _ in range(100):
        pacer.answered(None)
    assert pacer.rate == 100
    for _ in range(20):
        pacer.limited()
    assert pacer.rate == pytest.approx(5)


async def test_quota_slows_before_it_runs_out_and_pauses_when_empty() -> None:
    """A low remaining quota lowers the rate to fit; an empty one pauses until the reset."""
    pacer = Pacer(rate=100, concurrency=4)
    pacer.answered(Quota(remaining=100, reset_s=10))
    assert pacer.rate == pytest.approx(9.0)
    pacer.answered(Quota(remaining=0, reset_s=3))
    assert 2.5 < pacer.paused_s <= 3.0


async def test_pause_holds_new_requests_until_it_ends() -> None:
    """Entering the pacer during a pause waits the pause out (loop clock, no real sleep)."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(rate=1000, concurrency=2)
    pacer.pause_for(0.2)
    start = loop.time()
    async with pacer:
        pass
    assert loop.time() - start >= 0.19


async def test_run_against_a_tight_window_stays_inside_it(tmp_path: Path) -> None:
    """Server window of 60 requests / 3 s, job rate 200. The window's 429s are bare (no
    Retry-After, no quota headers on successes, as DocSpace's limiter): every worker pauses
    together, so only the requests in flight at each refusal are refused."""
    limits = Limits(window_requests=60, window_s=3.0)
    async with Sandbox(make_state(docspace_members=150), config=SandboxConfig(limits=limits)) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:120]]
        job = write_job(tmp_path, sb, rows=rows, limits={"rate": 200, "precheck": False})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        refused = [e for e in sb.log if e.status == 429]
        answered = [e for e in sb.log if e.status == 200]
        assert len(answered) == 120
        # Two windows' worth of rows: two or three refusal rounds of at most `concurrency`.
        assert len(refused) <= 12
        assert max_in_window([e.start for e in answered], 3.0) <= 60
    assert {o["status"] for o in last_outcomes(tmp_path / "results.jsonl").values()} == {"ok"}


async def test_bare_429_window_ends_all_ok_with_at_most_half_refused(tmp_path: Path) -> None:
    """Issue 11: a window of 30 requests per 5 s answering bare 429s; 60 rows, job rate 1000
    and 10 workers. Every row ends ok, the rows spend none of their retries on 429s
    (max_retries 1), and no more than half of all requests are refused."""
    limits = Limits(window_requests=30, window_s=5.0)
    async with Sandbox(make_state(docspace_members=80), config=SandboxConfig(limits=limits)) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:60]]
        job = write_job(tmp_path, sb, rows=rows,
                        limits={"rate": 1000, "precheck": False, "max_retries": 1})
        done = await run_cli("run", str(job), "--quiet", timeout_s=120)
        assert done.code == 0, done.stderr
        refused = [e for e in sb.log if e.status == 429]
        assert refused, "the window never filled: the test proves nothing"
        assert all(e.status in (200, 429) for e in sb.log)
        assert len(refused) <= len(sb.log) / 2
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert len(outcomes) == 60
    assert {o["status"] for o in outcomes.values()} == {"ok"}
