"""Transport over real HTTP against the sandbox: retries, the shared 429 pause, credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulkgroups.http.auth import AuthRefused, auth_for
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import RetryPolicy
from bulkgroups.http.transport import Transport
from bulkgroups.model import Op, Result, Row, Status, TargetKind
from bulkgroups.sandbox import Faults, Limits, Sandbox, SandboxConfig, make_state
from bulkgroups.secret import Secret
from bulkgroups.targets.connect import make_target
from tests.support import fast_transport as transport
from tests.support import last_outcomes, run_cli, write_job

StartSandbox = Callable[..., Awaitable[Sandbox]]
READ_ONLY = "sk-read-only"


def small_state() -> dict[str, Any]:
    state = make_state(docspace_groups=2, docspace_members=4, adaxes_groups=1, adaxes_members=8)
    state["docspace"]["api_keys"][READ_ONLY] = ["accounts:read"]
    return state


@pytest.fixture
async def box(start_sandbox: StartSandbox) -> Sandbox:
    """A sandbox serving small_state()."""
    return await start_sandbox(small_state())


def first_group(sb: Sandbox) -> tuple[str, str]:
    """The first DocSpace group and one of its members."""
    gid, group = next(iter(sb.dump()["docspace"]["groups"].items()))
    return gid, group["members"][0]


def ds_groups(sb: Sandbox) -> dict[str, set[str]]:
    return {gid: set(g["members"]) for gid, g in sb.dump()["docspace"]["groups"].items()}


def remove(gid: str, member: str) -> Row:
    return Row(row=1, line=2, op=Op.REMOVE, group=gid, member=member)


# -- retries ----------------------------------------------------------------------------------


async def test_503_is_retried_then_ok(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """Two 503s, then the answer: one Reply, three attempts, three requests seen."""
    gid, _ = first_group(box)
    box.inject(503, count=2, api="docspace")
    reply = await transport(box, client).send("GET", f"/api/2.0/group/{gid}")
    assert (reply.status, reply.attempts, reply.error) == (200, 3, None)
    assert [e.status for e in box.log] == [503, 503, 200]


async def test_dropped_connection_is_retried(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """A connection closed without an answer is sent again, and counted as an attempt."""
    gid, member = first_group(box)
    box.inject(0, count=1, api="docspace")
    result = await make_target(TargetKind.DOCSPACE, transport(box, client), precheck=False).apply(
        remove(gid, member)
    )
    assert result == Result(Status.OK, http_status=200, attempts=2)
    assert [e.status for e in box.log] == [0, 200]
    assert member not in ds_groups(box)[gid]


async def test_adaxes_503_is_retried(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """The Adaxes adapter goes through the same retries."""
    group, raw = next(
        (dn, o) for dn, o in box.dump()["adaxes"]["objects"].items() if o["type"] == "group"
    )
    member = raw["members"][0]
    box.inject(503, count=1, api="adaxes")
    tg = make_target(
        TargetKind.ADAXES, transport(box, client, kind=TargetKind.ADAXES), precheck=False
    )
    result = await tg.apply(remove(group, member))
    assert result == Result(Status.OK, http_status=200, attempts=2)
    assert member not in box.dump()["adaxes"]["objects"][group]["members"]


@pytest.mark.parametrize(
    ("status", "http_status", "error"),
    [
        # nginx's HTML page (the sandbox sends what the proxy sends): said what it was.
        (503, 503, "HTTP 503 from a proxy (HTML page)"),
        (0, None, "server closed the connection without answering"),
    ],
)
async def test_retries_exhausted_fail_the_row_with_the_reason(
    box: Sandbox,
    client: aiohttp.ClientSession,
    status: int,
    http_status: int | None,
    error: str,
) -> None:
    """When every attempt fails the row is failed with why, after 1 + max_retries sends."""
    gid, member = first_group(box)
    before = ds_groups(box)
    box.inject(status, count=10, api="docspace")
    tg = make_target(TargetKind.DOCSPACE, transport(box, client, retries=2), precheck=False)
    result = await tg.apply(remove(gid, member))
    assert result == Result(Status.FAILED, http_status=http_status, attempts=3, error=error)
    assert len(box.log) == 3
    assert ds_groups(box) == before


async def test_non_retryable_400_is_sent_once(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """A 400 is the request's own fault: one send, failed with the server's message."""
    gid, member = first_group(box)
    box.inject(400, count=5, api="docspace")
    tg = make_target(TargetKind.DOCSPACE, transport(box, client), precheck=False)
    result = await tg.apply(remove(gid, member))
    assert result == Result(
        Status.FAILED, http_status=400, attempts=1, error="Injected answer: 400"
    )
    assert len(box.log) == 1


async def test_timeout_is_retried_and_reported(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """No answer within timeout_s: retried, then `error` says so (status None)."""
    sb = await start_sandbox(small_state(), SandboxConfig(faults=Faults(latency_ms=400)))
    gid, _ = first_group(sb)
    tp = Transport(
        client,
        base_url=sb.base_url,
        auth=auth_for(TargetKind.DOCSPACE, Secret("sk-test-key")),
        pacer=Pacer(rate=1000.0, concurrency=4),
        policy=RetryPolicy(max_retries=1, base_s=0.01, cap_s=0.02),
        timeout_s=0.1,
    )
    reply = await tp.send("GET", f"/api/2.0/group/{gid}")
    assert (reply.status, reply.attempts, reply.error) == (None, 2, "no answer within 0.1 s")


# -- the shared pause -------------------------------------------------------------------------


async def test_429_retry_after_pauses_every_request(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """After a 429 with Retry-After no new request starts until the pause ends; only those
    already in flight finish meanwhile."""
    pause = 1.2
    sb = await start_sandbox(
        small_state(), SandboxConfig(limits=Limits.off(), faults=Faults(latency_ms=40))
    )
    gid, _ = first_group(sb)
    sb.inject(429, count=1, retry_after_s=pause, api="docspace")
    tp = transport(sb, client, concurrency=4)
    replies = await asyncio.gather(*(tp.send("GET", f"/api/2.0/group/{gid}") for _ in range(24)))
    assert all(r.status == 200 for r in replies)
    assert sorted(r.attempts for r in replies) == [1] * 23 + [2]
    [refused] = [e for e in sb.log if e.status == 429]
    # Generous margins: the client sees the 429 a little after the server sent it.
    quiet = [e for e in sb.log if refused.end + 0.3 < e.start < refused.end + pause - 0.1]
    assert quiet == []
    in_flight_then = [e for e in sb.log if e.start <= refused.end and e is not refused]
    assert len(in_flight_then) <= 3  # concurrency 4: the 429 and at most three others
    # The rest of the work waited for the pause (without one it would be done in ~0.25 s).
    after = [e for e in sb.log if e.start >= refused.end + pause - 0.1]
    assert len(after) >= 24 + 1 - 4 - 3


async def test_long_retry_after_is_not_waited(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """A Retry-After beyond the cap (the daily quota) ends the request at once, failed."""
    gid, member = first_group(box)
    box.inject(429, count=1, retry_after_s=86400, api="docspace")
    tg = make_target(TargetKind.DOCSPACE, transport(box, client), precheck=False)
    result = await tg.apply(remove(gid, member))
    assert result == Result(
        Status.FAILED, http_status=429, attempts=1, error="rate limited for 86400 s"
    )


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [TargetKind.DOCSPACE, TargetKind.ADAXES])
async def test_401_raises_auth_refused(
    box: Sandbox, client: aiohttp.ClientSession, kind: TargetKind
) -> None:
    """A wrong token is 401: the run must stop, not fail row after row."""
    tp = transport(box, client, kind=kind, token="sk-wrong" if kind == "docspace" else "wrong")
    path = "/api/2.0/group" if kind is TargetKind.DOCSPACE else "/api/directoryObjects/groupMembers"
    with pytest.raises(AuthRefused, match="401"):
        await tp.send("GET", path, params=None if kind is TargetKind.DOCSPACE else {"group": "x"})
    assert len(box.log) == 1


async def test_401_after_success_still_refuses(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """An expired signed-in token is 401 even mid-run: StaticAuth cannot renew, so it stops."""
    url = box.base_url + "/api/2.0/authentication"
    body = {"userName": "admin@example.com", "password": "test-password"}
    async with client.post(url, json=body) as resp:
        token = (await resp.json())["response"]["token"]
    gid, member = first_group(box)
    tg = make_target(TargetKind.DOCSPACE, transport(box, client, token=token), precheck=True)
    assert (await tg.apply(remove(gid, member))).status is Status.OK
    box.expire_tokens()
    with pytest.raises(AuthRefused):
        await tg.apply(remove(gid, first_group(box)[1]))


async def test_403_before_any_success_raises(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """A key without the write scope, refused on the first request: AuthRefused."""
    gid, member = first_group(box)
    before = ds_groups(box)
    tg = make_target(TargetKind.DOCSPACE, transport(box, client, token=READ_ONLY), precheck=False)
    with pytest.raises(AuthRefused, match="403"):
        await tg.apply(remove(gid, member))
    assert ds_groups(box) == before


async def test_403_after_a_success_fails_only_the_row(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """Once a request succeeded, a 403 is that row's refusal: failed with the message."""
    gid, member = first_group(box)
    before = ds_groups(box)
    # precheck reads the group first (allowed), then the DELETE lacks the write scope.
    tg = make_target(TargetKind.DOCSPACE, transport(box, client, token=READ_ONLY), precheck=True)
    result = await tg.apply(remove(gid, member))
    assert result == Result(
        Status.FAILED,
        http_status=403,
        attempts=1,
        # The auth layer's 403 has an empty body (API.md): the error says so.
        error="HTTP 403 (empty body)",
    )
    assert [(e.method, e.path, e.status) for e in box.log] == [
        ("GET", f"/api/2.0/group/{gid}", 200),
        ("DELETE", f"/api/2.0/group/{gid}/members", 403),
    ]
    assert ds_groups(box) == before


async def test_gateway_timeouts_and_html_503s_end_exact(tmp_path: Path) -> None:
    """Issue 11: 5 % of writes applied then answered with nginx's 504 page, 10 % HTML 503s:
    every row ends ok and the final membership is exactly the one asked for."""
    faults = Faults(seed=11, timeout_after_apply_ratio=0.05, error_503_ratio=0.10)
    state = make_state(docspace_groups=2, docspace_members=120)
    async with Sandbox(state, config=SandboxConfig(faults=faults, limits=Limits.off())) as sb:
        users = sb.dump()["docspace"]["users"]
        groups = sb.dump()["docspace"]["groups"]
        g_from, g_to = list(groups)[:2]
        active = lambda ids: sorted(i for i in ids if users[i]["kind"] == "user")  # noqa: E731
        removed = active(groups[g_from]["members"])[:80]
        added = [u for u in active(users) if u not in groups[g_to]["members"]][:40]
        rows = [{"op": "remove", "group": g_from, "member": m} for m in removed]
        rows += [{"op": "add", "group": g_to, "member": m} for m in added]
        expect_from = set(groups[g_from]["members"]) - set(removed)
        expect_to = set(groups[g_to]["members"]) | set(added)
        job = write_job(tmp_path, sb, rows=rows, limits={"max_retries": 6})
        done = await run_cli("run", str(job), "--quiet", timeout_s=120)
        assert done.code == 0, done.stderr
        statuses = [e.status for e in sb.log]
        assert 504 in statuses and 503 in statuses  # the faults did happen
        after = sb.dump()["docspace"]["groups"]
        assert set(after[g_from]["members"]) == expect_from
        assert set(after[g_to]["members"]) == expect_to
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert len(outcomes) == len(rows)
    assert {o["status"] for o in outcomes.values()} == {"ok"}


@pytest.mark.parametrize(("mode", "message"), [
    ("suspended", "the portal answers 404 with an empty body on every path: tenant suspended?"),
    ("unpaid", "402 payment required: the tenant is unpaid"),
])
async def test_a_suspended_or_unpaid_sandbox_tenant_stops_the_run(
    tmp_path: Path, mode: str, message: str
) -> None:
    """Issue 11: against the sandbox's tenant modes, exit 3 within a handful of requests,
    saying which; no row gets an outcome."""
    async with Sandbox(make_state(docspace_members=100)) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members]
        job = write_job(tmp_path, sb, rows=rows)
        sb.set_tenant(mode)  # type: ignore[arg-type]
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 3, done.stderr
        assert message in done.stderr
        assert 1 <= len(sb.log) <= 12
    assert last_outcomes(tmp_path / "results.jsonl") == {}


async def test_sigterm_during_a_retry_after_600_exits_within_a_second(tmp_path: Path) -> None:
    """Issue 10 item 9: the run waits out a 429 with Retry-After: 600; SIGTERM ends it within
    timeout_s + 1 s (here: well within 3 s), the waiting rows get no outcome, and nothing
    more is sent after the signal."""
    import signal
    import time as _time

    from tests.support import finish, start_cli

    async with Sandbox(make_state(docspace_members=50)) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:20]]
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False, "timeout_s": 2})
        sb.inject(429, count=1, retry_after_s=600, api="docspace")
        proc = await start_cli("run", str(job), "--quiet")
        await sb.wait_for_requests(1, timeout_s=30)
        assert sb.log[0].status == 429  # that row now waits 600 s (or is about to)
        start = _time.monotonic()
        proc.send_signal(signal.SIGTERM)
        done = await finish(proc, timeout_s=30)
        took = _time.monotonic() - start
        assert took < 3.0, f"{took:.1f} s"
        assert "Traceback" not in done.stderr
        assert [e for e in sb.log if e.start > start + 0.5] == []  # nothing sent after
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert len(outcomes) < 20  # the paused row was not waited for: it has no outcome
    assert all(o["status"] == "ok" for o in outcomes.values())
