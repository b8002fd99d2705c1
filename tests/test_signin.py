"""Sign-in that lasts the whole run (Adaxes legacy sessions, DocSpace personal access tokens)
and Adaxes asynchronous execution: real HTTP against the sandbox, end to end through the CLI
where it matters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bulkgroups.http.auth import AuthRefused
from bulkgroups.http.signin import RENEW_AGAIN_S, Login, SignIn, seconds_left, sign_in_for
from bulkgroups.model import Op, Row, Status, TargetKind
from bulkgroups.sandbox import Limits, Sandbox, SandboxConfig, make_state
from bulkgroups.secret import Secret
from bulkgroups.targets.connect import make_target
from tests.support import (
    fast_transport,
    finish,
    last_outcomes,
    results_lines,
    run_cli,
    signin_env,
    start_cli,
    write_job,
)

AX_USER = "EXAMPLE\\admin"
DS_USER = "admin@example.com"
PASSWORD = "Pa55-word-" + "q7Z" * 6  # distinctive, so a leak anywhere is found
WRONG = "Wr0ng-pass-" + "k4X" * 6
AX_AUTH = "/restApi/api/auth"
AX_CREATE = "/restApi/api/authSessions/create"
AX_SESSIONS = "/restApi/api/authSessions"
DS_AUTH = "/api/2.0/authentication"
# DocSpace's concurrency caps stay; a wider minute window lets a test's run finish quickly
# (the quota headers would otherwise pace it to 1,500 requests a minute).
ROOMY = Limits(window_requests=60000)


class Clock:
    """A monotonic clock a test moves by hand (the only thing ever faked here)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_with_password(**sizes: int) -> dict[str, Any]:
    state = make_state(**sizes)
    state["adaxes"]["accounts"] = {AX_USER: PASSWORD}
    state["docspace"]["accounts"] = {DS_USER: PASSWORD}
    return state


def ax_groups(sb: Sandbox) -> dict[str, set[str]]:
    objects = sb.dump()["adaxes"]["objects"]
    return {dn: set(o["members"]) for dn, o in objects.items() if o["type"] == "group"}


def ds_groups(sb: Sandbox) -> dict[str, set[str]]:
    return {g: set(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


def auth_calls(sb: Sandbox) -> list[tuple[str, str, int]]:
    return [(e.method, e.path, e.status) for e in sb.log if e.api == "auth"]


def count(sb: Sandbox, method: str, path: str) -> int:
    return sum(1 for e in sb.log if e.method == method and e.path == path)


def removals(groups: dict[str, set[str]]) -> list[dict[str, str]]:
    return [{"op": "remove", "group": g, "member": m}
            for g, members in groups.items() for m in sorted(members)]


def produced(folder: Path, *texts: str) -> Iterator[str]:
    """Everything a run left: its printed output and every file under its folder."""
    yield from texts
    for path in folder.rglob("*"):
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")


def ax_env(password: str = PASSWORD) -> dict[str, str]:
    return signin_env(AX_USER, password)


def ds_env(password: str = PASSWORD) -> dict[str, str]:
    return signin_env(DS_USER, password)


# --- Adaxes legacy sign-in, end to end ------------------------------------------------------


async def test_adaxes_signs_in_once_uses_the_token_and_signs_out(tmp_path: Path) -> None:
    """A username/password job signs in (session, token), sends Adm-Authorization, signs out."""
    async with Sandbox(state_with_password(adaxes_groups=2, adaxes_members=30)) as sb:
        before = ax_groups(sb)
        g0 = next(iter(before))
        rows = removals({g0: before[g0]})
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows, signin=True)
        done = await run_cli("run", str(job), "--quiet", env=ax_env())
        assert done.code == 0, done.stderr
        assert ax_groups(sb)[g0] == set()
        calls = auth_calls(sb)
        assert calls[:2] == [("POST", AX_CREATE, 200), ("POST", AX_AUTH, 200)]
        # Sign-out comes last: the token, then the session.
        assert calls[-2:] == [("DELETE", AX_AUTH, 204), ("DELETE", AX_SESSIONS, 204)]
        assert len(calls) == 4
        issued = sb.issued_tokens()
        label = issued["adaxes"][0][:4] + "…"
        data = [e for e in sb.log if e.api == "adaxes"]
        assert data and {e.token for e in data} == {label}
        assert all(e.status == 200 for e in data)
    assert {o["status"] for o in last_outcomes(tmp_path / "results.jsonl").values()} == {"ok"}


async def test_adaxes_token_is_renewed_before_it_expires(tmp_path: Path) -> None:
    """A 2-second token over a 4-second run is renewed by PATCH ahead of time: no 401 at all."""
    config = SandboxConfig(token_ttl_s=2.0)
    async with Sandbox(state_with_password(adaxes_groups=1, adaxes_members=80),
                       config=config) as sb:
        before = ax_groups(sb)
        job = write_job(tmp_path, sb, kind="adaxes", rows=removals(before), signin=True,
                        limits={"rate": 20})
        done = await run_cli("run", str(job), "--quiet", env=ax_env())
        assert done.code == 0, done.stderr
        assert sb.log[-1].end - sb.log[0].start > 3.0  # the run outlived the first token
        assert count(sb, "PATCH", AX_AUTH) >= 1
        assert all(e.status == 200 for e in sb.log if e.method == "PATCH")
        assert [e for e in sb.log if e.status == 401] == []
        assert count(sb, "POST", AX_CREATE) == 1
        assert all(not m for m in ax_groups(sb).values())


async def test_adaxes_token_expiring_mid_run_signs_in_again_losing_no_row(tmp_path: Path) -> None:
    """1,500 rows; every token expires after 400 requests: one new sign-in, each row once, ok."""
    state = state_with_password(adaxes_groups=3, adaxes_members=500)
    async with Sandbox(state) as sb:
        before = ax_groups(sb)
        rows = removals(before)
        assert len(rows) == 1500
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows, signin=True)
        proc = await start_cli("run", str(job), "--quiet", env=ax_env())
        await sb.wait_for_requests(400, timeout_s=60)
        assert sb.expire_tokens() == 1
        done = await finish(proc, timeout_s=120)
        assert done.code == 0, done.stderr
        assert all(not m for m in ax_groups(sb).values())
        assert any(e.status == 401 and e.api == "adaxes" for e in sb.log)
        # Every worker that met the 401 took the one new sign-in.
        assert count(sb, "POST", AX_CREATE) == 2
        assert count(sb, "POST", AX_AUTH) == 2
        assert sb.log[-1].path == AX_SESSIONS and sb.log[-1].method == "DELETE"
    lines = results_lines(tmp_path / "results.jsonl")
    assert sorted(o["row"] for o in lines) == list(range(1, 1501))
    assert {o["status"] for o in lines} == {"ok"}
    # A sign-in is not an attempt at the row.
    assert {o["attempts"] for o in lines} == {1}


async def test_adaxes_wrong_password_stops_at_once(tmp_path: Path) -> None:
    """A refused sign-in: exit 3, the server's reason shown, one attempt only, no password."""
    async with Sandbox(state_with_password(adaxes_members=50)) as sb:
        before = ax_groups(sb)
        job = write_job(tmp_path, sb, kind="adaxes", rows=removals(before), signin=True)
        done = await run_cli("run", str(job), env=ax_env(WRONG))
        assert done.code == 3
        assert "The user name or password is incorrect." in done.stderr
        assert "attempts left" in done.stderr and "403" in done.stderr
        assert auth_calls(sb) == [("POST", AX_CREATE, 403)]
        assert len(sb.log) == 1  # no data request went out
        assert ax_groups(sb) == before
    assert not any(WRONG in text for text in produced(tmp_path, done.stdout, done.stderr))


async def test_adaxes_sign_in_without_answer_is_retried(tmp_path: Path) -> None:
    """A dropped connection and a 503 on sign-in are tried again; the run then goes through."""
    async with Sandbox(state_with_password(adaxes_groups=1, adaxes_members=10)) as sb:
        before = ax_groups(sb)
        job = write_job(tmp_path, sb, kind="adaxes", rows=removals(before), signin=True)
        sb.inject(status=0, api="auth")
        sb.inject(status=503, api="auth")
        done = await run_cli("run", str(job), "--quiet", env=ax_env())
        assert done.code == 0, done.stderr
        assert auth_calls(sb)[:4] == [
            ("POST", AX_CREATE, 0), ("POST", AX_CREATE, 503),
            ("POST", AX_CREATE, 200), ("POST", AX_AUTH, 200),
        ]
        assert all(not m for m in ax_groups(sb).values())


async def test_plan_signs_in_reads_and_signs_out(tmp_path: Path) -> None:
    """`plan` on a username/password job signs in, reads with the token, and signs out."""
    async with Sandbox(state_with_password(adaxes_groups=2, adaxes_members=10)) as sb:
        before = ax_groups(sb)
        job = write_job(tmp_path, sb, kind="adaxes", rows=removals(before), signin=True)
        done = await run_cli("plan", str(job), env=ax_env())
        assert done.code == 0, done.stderr
        assert [e.method for e in sb.log if e.api == "adaxes"] == ["GET", "GET"]
        assert [c[:2] for c in auth_calls(sb)] == [
            ("POST", AX_CREATE), ("POST", AX_AUTH), ("DELETE", AX_AUTH), ("DELETE", AX_SESSIONS),
        ]


async def test_sandbox_job_signs_in_to_the_embedded_sandbox(tmp_path: Path) -> None:
    """`sandbox = true` with username_env/password_env signs in to the embedded emulator."""
    objects = make_state()["adaxes"]["objects"]
    group = next(dn for dn, o in objects.items() if o["type"] == "group")
    (tmp_path / "in.jsonl").write_bytes(b"".join(
        orjson.dumps({"op": "remove", "group": group, "member": objects[m]["guid"]}) + b"\n"
        for m in objects[group]["members"][:5]
    ))
    job = tmp_path / "job.toml"
    job.write_text(
        '[job]\nname = "embedded"\n[target]\nkind = "adaxes"\nsandbox = true\n'
        'username_env = "BG_TEST_USER"\npassword_env = "BG_TEST_PASSWORD"\n'
        '[input]\npath = "in.jsonl"\n[output]\nresults = "results.jsonl"\n',
        encoding="utf-8",
    )
    done = await run_cli("run", str(job), "--quiet", env=signin_env(AX_USER, "test-password"))
    assert done.code == 0, done.stderr
    assert {o["status"] for o in results_lines(tmp_path / "results.jsonl")} == {"ok"}
    refused = await run_cli("run", str(job), "--quiet", "--results", str(tmp_path / "r2.jsonl"),
                            env=signin_env(AX_USER, WRONG))
    assert refused.code == 3 and "refused the sign-in (HTTP 403)" in refused.stderr


# --- Adaxes asynchronous execution ------------------------------------------------------------


async def test_adaxes_async_operations_end_exactly_like_direct_answers(tmp_path: Path) -> None:
    """Changes answered 202 and polled end ok/noop/pending/failed as direct answers do."""
    state = make_state(adaxes_groups=4, adaxes_members=8)
    objects = state["adaxes"]["objects"]
    plain, other, approval, denied = [dn for dn, o in objects.items() if o["type"] == "group"]
    objects[approval]["approval"] = True
    objects[denied]["denied"] = True
    members = sorted(objects[plain]["members"])
    outsider = next(dn for dn, o in objects.items() if o["type"] == "user"
                    and not any(dn in g.get("members", []) for g in objects.values()))
    rows = [
        {"op": "remove", "group": plain, "member": members[0]},
        {"op": "remove", "group": plain, "member": objects[members[1]]["guid"]},
        {"op": "remove", "group": plain, "member": outsider},  # refused, then read: noop
        {"op": "move", "group": plain, "member": members[2], "to_group": other},
        {"op": "add", "group": other, "member": outsider},
        {"op": "add", "group": approval, "member": outsider},  # pending
        {"op": "remove", "group": denied, "member": sorted(objects[denied]["members"])[0]},
    ]
    runs: dict[str, tuple[list[str], dict[str, set[str]]]] = {}
    for mode, config, target in (
        ("direct", SandboxConfig(), None),
        ("async", SandboxConfig(adaxes_operation_s=0.3), {"adm_wait_s": 0}),
    ):
        folder = tmp_path / mode
        folder.mkdir()
        async with Sandbox(state, config=config) as sb:
            # precheck off: every row reaches the server, the refusal check included.
            job = write_job(folder, sb, kind="adaxes", rows=rows, fmt="jsonl",
                            limits={"precheck": False}, target=target)
            done = await run_cli("run", str(job), "--quiet", token="adm-test-token")
            assert done.code == 1, done.stderr  # the denied group fails the row
            statuses = [o["status"] for _, o in
                        sorted(last_outcomes(folder / "results.jsonl").items())]
            runs[mode] = (statuses, ax_groups(sb))
            accepted = [e for e in sb.log if e.status == 202]
            polls = [e for e in sb.log if e.path.startswith("/restApi/api/runningOperations/")]
            if mode == "async":
                # Every change went through 202 and was polled to its end.
                changes = [e for e in sb.log if e.method in ("POST", "DELETE")]
                assert len(accepted) == len(changes) >= len(rows)
                assert len(polls) >= len(accepted) and all(e.status == 200 for e in polls)
            else:
                assert accepted == [] and polls == []
    assert runs["async"] == runs["direct"]
    assert runs["direct"][0] == ["ok", "ok", "noop", "ok", "ok", "pending", "failed"]
    after = runs["async"][1]
    assert after[plain] == set(objects[plain]["members"]) - set(members[:3])
    assert after[other] == set(objects[other]["members"]) | {members[2], outsider}


async def test_adaxes_operation_still_running_fails_the_row(client: aiohttp.ClientSession) -> None:
    """An operation that outlasts the poll limit fails its row, naming the operation."""
    async with Sandbox(make_state(), config=SandboxConfig(adaxes_operation_s=30)) as sb:
        group = next(dn for dn, o in sb.dump()["adaxes"]["objects"].items()
                     if o["type"] == "group")
        member = sorted(ax_groups(sb)[group])[0]
        target = make_target(TargetKind.ADAXES, fast_transport(sb, client, kind=TargetKind.ADAXES),
                             precheck=False, adm_wait_s=0, poll_limit_s=0.5)
        result = await target.apply(Row(1, 2, Op.REMOVE, group, member))
        assert result.status is Status.FAILED
        assert result.error is not None
        assert result.error.startswith("operation ") and "still running after 0.5 s" in result.error
        polls = [e for e in sb.log if e.path.startswith("/restApi/api/runningOperations/")]
        assert 2 <= len(polls) <= 4  # 0.2 s, then doubling, capped by the limit
        assert member in ax_groups(sb)[group]  # nothing happened yet


# --- DocSpace personal access tokens ----------------------------------------------------------


async def test_docspace_token_expiring_mid_run_signs_in_again(tmp_path: Path) -> None:
    """A personal token expiring after 200 requests: one new sign-in, every row ok, state exact."""
    state = state_with_password(docspace_groups=3, docspace_members=200)
    async with Sandbox(state, config=SandboxConfig(limits=ROOMY)) as sb:
        before = ds_groups(sb)
        rows = removals(before)
        job = write_job(tmp_path, sb, rows=rows, signin=True)
        proc = await start_cli("run", str(job), "--quiet", env=ds_env())
        await sb.wait_for_requests(200, timeout_s=60)
        assert sb.expire_tokens() == 1
        done = await finish(proc, timeout_s=120)
        assert done.code == 0, done.stderr
        assert all(not m for m in ds_groups(sb).values())
        assert count(sb, "POST", DS_AUTH) == 2
        assert any(e.status == 401 for e in sb.log if e.api == "docspace")
        # The token went bare, never as the seeded API key.
        assert not any(e.token.startswith("sk-") for e in sb.log if e.api == "docspace")
    lines = results_lines(tmp_path / "results.jsonl")
    assert sorted(o["row"] for o in lines) == list(range(1, len(rows) + 1))
    assert {o["status"] for o in lines} == {"ok"}
    assert {o["attempts"] for o in lines} == {1}


async def test_docspace_token_is_replaced_before_it_expires(tmp_path: Path) -> None:
    """A 2-second personal token over a 4-second run is replaced ahead of time: no 401."""
    config = SandboxConfig(token_ttl_s=2.0)
    async with Sandbox(state_with_password(docspace_groups=1, docspace_members=80),
                       config=config) as sb:
        before = ds_groups(sb)
        job = write_job(tmp_path, sb, rows=removals(before), signin=True, limits={"rate": 20})
        done = await run_cli("run", str(job), "--quiet", env=ds_env())
        assert done.code == 0, done.stderr
        assert count(sb, "POST", DS_AUTH) >= 2
        assert [e for e in sb.log if e.status == 401] == []
        assert all(not m for m in ds_groups(sb).values())


async def test_docspace_wrong_password_stops_at_once(tmp_path: Path) -> None:
    """A refused DocSpace sign-in: exit 3 with the server's words, one attempt, no password."""
    async with Sandbox(state_with_password(docspace_members=50)) as sb:
        before = ds_groups(sb)
        job = write_job(tmp_path, sb, rows=removals(before), signin=True)
        done = await run_cli("run", str(job), env=ds_env(WRONG))
        assert done.code == 3
        assert "User authentication failed" in done.stderr and "401" in done.stderr
        assert auth_calls(sb) == [("POST", DS_AUTH, 401)]
        assert len(sb.log) == 1
        assert ds_groups(sb) == before
    assert not any(WRONG in text for text in produced(tmp_path, done.stdout, done.stderr))


# --- secrets -------------------------------------------------------------------------------


async def test_nothing_a_run_leaves_holds_a_password_token_or_session(tmp_path: Path) -> None:
    """Output, results, meta and lock files of sign-in runs hold no secret the runs used."""
    state = state_with_password(docspace_groups=1, docspace_members=300,
                                adaxes_groups=1, adaxes_members=300)
    outputs: list[str] = []
    async with Sandbox(state, config=SandboxConfig(token_ttl_s=3.0, limits=ROOMY)) as sb:
        for kind, env in (("adaxes", ax_env()), ("docspace", ds_env())):
            folder = tmp_path / kind
            folder.mkdir()
            groups = ax_groups(sb) if kind == "adaxes" else ds_groups(sb)
            job = write_job(folder, sb, kind=kind, rows=removals(groups), signin=True,
                            limits={"rate": 200})
            start = len(sb.log)
            proc = await start_cli("run", str(job), env=env)  # not quiet: the summary too
            await sb.wait_for_requests(start + 100, timeout_s=60)
            sb.expire_tokens(sessions=True)
            done = await finish(proc, timeout_s=120)
            assert done.code == 0, done.stderr
            outputs += [done.stdout, done.stderr]
        issued = sb.issued_tokens()
    secrets = [PASSWORD, *issued["adaxes"], *issued["adaxes_sessions"], *issued["docspace"]]
    assert len(issued["adaxes"]) >= 2 and len(issued["docspace"]) >= 2
    assert len(issued["adaxes_sessions"]) >= 2
    texts = list(produced(tmp_path, *outputs))
    assert any("results" in t for t in texts) and len(texts) >= 8
    leaks = [s[:6] for s in secrets if any(s in text for text in texts)]
    assert leaks == []


# --- the sign-in object itself (real HTTP, hand-moved clock) ----------------------------------


@contextlib.asynccontextmanager
async def signed_in(
    sb: Sandbox, kind: TargetKind = TargetKind.ADAXES, password: str = PASSWORD,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[SignIn]:
    """A sign-in as a run makes it: on the run's one session and transport (no cookie jar);
    leaving the block signs out through that transport, then closes the session."""
    user = AX_USER if kind is TargetKind.ADAXES else DS_USER
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        t = fast_transport(sb, session, kind=kind, token="unused")
        async with sign_in_for(kind, t, Login(user, Secret(password)), clock=clock) as auth:
            yield auth


def ax_signin(sb: Sandbox, password: str = PASSWORD,
              clock: Callable[[], float] = time.monotonic
              ) -> contextlib.AbstractAsyncContextManager[SignIn]:
    return signed_in(sb, TargetKind.ADAXES, password, clock)


async def test_concurrent_401s_lead_to_one_new_sign_in() -> None:
    """Twenty workers hearing 401 for the same token cause exactly one new sign-in."""
    async with Sandbox(state_with_password()) as sb, ax_signin(sb) as auth:
        stale = await auth.headers()
        sb.expire_tokens(sessions=True)
        assert all(await asyncio.gather(*(auth.renew(stale) for _ in range(20))))
        fresh = await auth.headers()
        assert fresh != stale and set(fresh) == {"Adm-Authorization"}
        assert count(sb, "POST", AX_CREATE) == 2 and count(sb, "POST", AX_AUTH) == 2


async def test_a_refused_sign_in_is_never_sent_again() -> None:
    """After a refusal, every caller hears it without a request: the server slows retries."""
    async with Sandbox(state_with_password()) as sb, ax_signin(sb, WRONG) as auth:
        errors = await asyncio.gather(*(auth.headers() for _ in range(5)),
                                      return_exceptions=True)
        assert all(isinstance(e, AuthRefused) for e in errors)
        with pytest.raises(AuthRefused, match="attempts left"):
            await auth.renew({})
        assert auth_calls(sb) == [("POST", AX_CREATE, 403)]
        assert not any(WRONG in str(e) for e in errors)


async def test_renewal_falls_back_to_sign_in_where_patch_is_missing() -> None:
    """A server without PATCH /api/auth: the renewal signs in anew, and stops trying PATCH."""
    clock = Clock()
    async with Sandbox(state_with_password()) as sb, ax_signin(sb, clock=clock) as auth:
        first = await auth.headers()
        clock.now += 1750  # within the last minute of a 30-minute token
        sb.inject(status=404, api="auth")
        second = await auth.headers()
        assert second != first
        clock.now += 1750
        third = await auth.headers()
        assert third != second
        assert [c[:2] for c in auth_calls(sb)] == [
            ("POST", AX_CREATE), ("POST", AX_AUTH),
            ("PATCH", AX_AUTH),
            ("POST", AX_CREATE), ("POST", AX_AUTH),
            ("POST", AX_CREATE), ("POST", AX_AUTH),
        ]


async def test_unanswered_renewal_keeps_the_token_and_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A renewal with no answer keeps the still-valid token; a later call renews it."""
    clock = Clock()
    caplog.set_level(logging.WARNING)
    async with Sandbox(state_with_password()) as sb, ax_signin(sb, clock=clock) as auth:
        first = await auth.headers()
        token = first["Adm-Authorization"]
        clock.now += 1750
        sb.inject(status=0, count=2, api="auth")
        assert await auth.headers() == first
        assert await auth.headers() == first  # not due again so soon: no request
        clock.now += RENEW_AGAIN_S
        assert await auth.headers() == first  # PATCH keeps the token, and extends it
        patches = [c for c in auth_calls(sb) if c[0] == "PATCH"]
        assert patches == [("PATCH", AX_AUTH, 0)] * 2 + [("PATCH", AX_AUTH, 200)]
    assert "renewing the sign-in failed" in caplog.text
    assert token not in caplog.text and PASSWORD not in caplog.text


async def test_failed_sign_out_is_logged_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sign-out never raises; its warnings name the path, never the token in its query."""
    caplog.set_level(logging.WARNING)
    async with Sandbox(state_with_password()) as sb:
        async with ax_signin(sb) as auth:
            token = (await auth.headers())["Adm-Authorization"]
            sb.inject(status=0, api="auth")
            sb.inject(status=500, api="auth")
        assert auth_calls(sb)[-2:] == [("DELETE", AX_AUTH, 0), ("DELETE", AX_SESSIONS, 500)]
    assert "/api/auth" in caplog.text and "HTTP 500" in caplog.text
    assert token not in caplog.text


async def test_docspace_sign_in_replaces_an_expired_token_by_the_clock() -> None:
    """Past its `expires`, a DocSpace token is replaced before use, with no 401 needed."""
    clock = Clock()
    async with Sandbox(state_with_password()) as sb:
        async with signed_in(sb, TargetKind.DOCSPACE, clock=clock) as auth:
            first = await auth.headers()
            assert set(first) == {"Authorization"} and not first["Authorization"].startswith("sk-")
            clock.now += 1801
            assert await auth.headers() != first
        assert auth_calls(sb) == [("POST", DS_AUTH, 200)] * 2  # 200, as the server answers


async def test_repr_shows_no_secret() -> None:
    """Neither the sign-in nor its grant shows the password or the token in a repr."""
    async with Sandbox(state_with_password()) as sb, ax_signin(sb) as auth:
        token = (await auth.headers())["Adm-Authorization"]
        texts = [repr(auth), str(auth), repr(auth._grant), repr(Login(AX_USER, Secret(PASSWORD)))]
        assert not any(PASSWORD in t or token in t for t in texts)


def test_expiry_times_are_read_in_their_zone() -> None:
    """`Z`, an offset, seven fraction digits and no zone (UTC) are read; junk is None."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert seconds_left("2026-01-01T12:30:00Z", now=now) == 1800
    assert seconds_left("2026-01-01T15:30:00+03:00", now=now) == 1800
    assert seconds_left("2026-01-01T12:00:10.1234567Z", now=now) == pytest.approx(10.123456)
    assert seconds_left("2026-01-01T12:01:00", now=now) == 60
    assert seconds_left((now - timedelta(seconds=5)).isoformat(), now=now) == -5
    assert seconds_left("soon", now=now) is None
    assert seconds_left(None, now=now) is None



async def test_docspace_two_factor_account_stops_with_exit_3(tmp_path: Path) -> None:
    """The sandbox's two-factor account: sign-in answers 200 with `tfa` and no token; the run
    stops at once (exit 3), says why and what to use instead, and sends nothing else."""
    state = state_with_password(docspace_groups=1, docspace_members=10)
    state["docspace"]["tfa"] = [DS_USER]
    async with Sandbox(state) as sb:
        before = ds_groups(sb)
        job = write_job(tmp_path, sb, rows=removals(before), signin=True)
        done = await run_cli("run", str(job), "--quiet", env=ds_env())
        assert done.code == 3, done.stderr
        assert "two-factor" in done.stderr and "API key" in done.stderr
        assert auth_calls(sb) == [("POST", DS_AUTH, 200)]
        assert [e for e in sb.log if e.api == "docspace"] == []
        assert ds_groups(sb) == before
    assert not any(PASSWORD in t for t in produced(tmp_path, done.stdout, done.stderr))
