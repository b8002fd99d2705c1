"""The transport against a misbehaving server (tests/hostile.py) on 127.0.0.1, with a second
one on 127.0.0.2 where a redirect points: redirects, echoed credentials, huge and stalled
bodies, HTML and empty answers, bare 429s, suspended and unpaid tenants, cookies, the stop.
Real HTTP throughout; CLI runs in a subprocess where exit codes and printed text matter."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulkgroups.http.auth import AuthRefused, auth_for
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import BodyKind, RedirectRefused, RetryPolicy, TenantRefused
from bulkgroups.http.transport import Transport
from bulkgroups.model import Abandoned, TargetKind
from bulkgroups.secret import Secret
from tests import hostile
from tests.hostile import Hostile
from tests.support import last_outcomes, run_cli, signin_env, write_job

DS_KEY = "sk-hostile-" + "Zq9x" * 8  # distinctive, so a leak anywhere is found
AX_TOKEN = "adm-" + "Tk7w" * 10
PASSWORD = "Pa55-" + "Hq3v" * 6
GID = "0f8a6c1e-6a49-4f7e-9d0e-6a1f0c2b3d4e"
UID = "7c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"
AX_GROUP = "CN=Staff,OU=Groups,DC=example,DC=com"
AX_MEMBER = "CN=Ann Lee,OU=People,DC=example,DC=com"
DS_GROUP_PATH = f"/api/2.0/group/{GID}"


@pytest.fixture
async def srv() -> AsyncIterator[Hostile]:
    async with Hostile("127.0.0.1") as s:
        yield s


@pytest.fixture
async def other() -> AsyncIterator[Hostile]:
    """The second host: a redirect's target. It must receive nothing."""
    async with Hostile("127.0.0.2") as s:
        yield s


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        yield s


def make_transport(
    srv: Hostile, session: aiohttp.ClientSession, *, kind: TargetKind = TargetKind.DOCSPACE,
    retries: int = 2, timeout_s: float = 5.0, concurrency: int = 4,
    window_start_s: float = 0.1, limited_budget_s: float = 900.0,
) -> Transport:
    token = DS_KEY if kind is TargetKind.DOCSPACE else AX_TOKEN
    return Transport(
        session, base_url=srv.url, auth=auth_for(kind, Secret(token)),
        pacer=Pacer(rate=1000.0, concurrency=concurrency, window_start_s=window_start_s),
        policy=RetryPolicy(max_retries=retries, base_s=0.01, cap_s=0.05,
                           limited_budget_s=limited_budget_s),
        timeout_s=timeout_s,
    )


def rows_for(kind: str, n: int = 1) -> list[dict[str, str]]:
    if kind == "docspace":
        members = [UID[:-4] + f"{i:04x}" for i in range(n)]
        return [{"op": "remove", "group": GID, "member": m} for m in members]
    return [{"op": "remove", "group": AX_GROUP, "member": f"CN=U{i},OU=People,DC=example,DC=com"}
            for i in range(n)]


def job(tmp_path: Path, srv: Hostile, kind: str, *, signin: bool = False, n: int = 1,
        limits: dict[str, Any] | None = None) -> Path:
    return write_job(tmp_path, hostile.job_target(srv.url), kind=kind, rows=rows_for(kind, n),
                     signin=signin, limits={"precheck": False, "max_retries": 1,
                                            **(limits or {})})


def env_for(kind: str, signin: bool) -> dict[str, str]:
    return signin_env("admin@example.com" if kind == "docspace" else "EXAMPLE\\admin",
                      PASSWORD) if signin else {}


def token_for(kind: str) -> str:
    return DS_KEY if kind == "docspace" else AX_TOKEN


def everything(folder: Path, *texts: str) -> Iterator[str]:
    """All a run printed and every file it left."""
    yield from texts
    for path in folder.rglob("*"):
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")


def secrets_in(texts: Iterator[str]) -> list[str]:
    found = []
    for text in texts:
        for secret in (DS_KEY, AX_TOKEN, PASSWORD, "Zq9xZq9x", "Tk7wTk7w", "Hq3vHq3v"):
            if secret in text:
                found.append(secret)
    return found


# -- redirects (issue 10 item 1) ------------------------------------------------------------


@pytest.mark.parametrize(("kind", "signin"), [
    ("docspace", False), ("adaxes", False), ("docspace", True), ("adaxes", True),
])
async def test_a_redirect_on_the_first_request_stops_the_run_and_sends_nothing_away(
    tmp_path: Path, srv: Hostile, other: Hostile, kind: str, signin: bool
) -> None:
    """307 to another host on every path (sign-in POST included): exit 3 naming the host;
    the other host gets no request at all — no token, no password body."""
    srv.fallback = hostile.redirect(307, other.url + "/collect")
    done = await run_cli("run", str(job(tmp_path, srv, kind, signin=signin)), "--quiet",
                         token=token_for(kind), env=env_for(kind, signin))
    assert done.code == 3, done.stderr
    assert "redirects to 127.0.0.2" in done.stderr and "check base_url" in done.stderr
    assert other.requests == []
    assert len(srv.requests) == 1  # one attempt, no follow, no retry
    if signin:
        assert srv.requests[0].method == "POST"
        assert PASSWORD.encode() in srv.requests[0].body  # it went only where it was meant to
    assert "Traceback" not in done.stderr


async def test_a_redirect_loop_is_one_refusal_without_a_traceback(
    tmp_path: Path, srv: Hostile
) -> None:
    """A server redirecting to itself forever: nothing is followed, exit 3, no traceback."""
    async def loop(request: Any, body: bytes) -> Any:
        return await hostile.redirect(302, srv.url + request.path)(request, body)
    srv.fallback = loop
    done = await run_cli("run", str(job(tmp_path, srv, "docspace", n=5)), "--quiet",
                         token=DS_KEY)
    assert done.code == 3
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "redirects to 127.0.0.1" in done.stderr
    assert len(srv.requests) <= 5


async def test_a_redirect_after_a_success_fails_only_that_request(
    srv: Hostile, other: Hostile, session: aiohttp.ClientSession
) -> None:
    """Once a request succeeded, a 3xx is that request's failure, naming status and host."""
    srv.on("GET", DS_GROUP_PATH, hostile.json(200, hostile.docspace_group(GID, [UID])))
    srv.on("DELETE", DS_GROUP_PATH + "/members", hostile.redirect(302, other.url + "/x"))
    t = make_transport(srv, session)
    assert (await t.send("GET", DS_GROUP_PATH)).ok
    reply = await t.send("DELETE", DS_GROUP_PATH + "/members", json={"members": [UID]})
    assert (reply.status, reply.attempts) == (302, 1)
    assert reply.error == "HTTP 302 redirect to 127.0.0.2: not followed"
    assert other.requests == []


async def test_a_redirect_first_raises_redirect_refused(
    srv: Hostile, other: Hostile, session: aiohttp.ClientSession
) -> None:
    srv.fallback = hostile.redirect(308, other.url + "/x")
    with pytest.raises(RedirectRefused, match=r"redirects to 127\.0\.0\.2"):
        await make_transport(srv, session, kind=TargetKind.ADAXES).send("GET", "/api/x")
    assert other.requests == []


# -- scrubbing (issue 10 item 2) ------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status", "signin"), [
    ("docspace", 400, False), ("adaxes", 400, False),
    ("docspace", 401, False), ("adaxes", 401, False),
    ("docspace", 403, False), ("adaxes", 403, True), ("docspace", 401, True),
])
async def test_a_server_echoing_the_credential_leaks_nothing(
    tmp_path: Path, srv: Hostile, kind: str, status: int, signin: bool
) -> None:
    """Errors that repeat the header and the body (the password, on a sign-in): nothing of
    the secret in stdout, stderr, results.jsonl, its meta, or `report`'s output."""
    srv.fallback = hostile.echo_credentials(status, shape=kind)
    if signin and kind == "docspace":
        # The sign-in works (so the echoed header is the signed-in token), then every
        # request is refused with the echo.
        srv.on("POST", "/api/2.0/authentication", hostile.json(
            200, {"response": {"token": "pat-" + "Zq9x" * 10, "expires": "2099-01-01T00:00:00Z"},
                  "status": 0, "statusCode": 200}))
    done = await run_cli("run", str(job(tmp_path, srv, kind, signin=signin, n=3)), "--quiet",
                         token=token_for(kind), env=env_for(kind, signin))
    assert done.code == (1 if status == 400 else 3), done.stderr
    seen = srv.requests[-1]
    assert any(secret.encode() in seen.body or secret in str(seen.headers)
               for secret in (DS_KEY, AX_TOKEN, PASSWORD, "Zq9x" * 10))  # the echo had it
    report = await run_cli("report", str(tmp_path / "results.jsonl"))
    assert secrets_in(everything(tmp_path, done.stdout, done.stderr, report.stdout,
                                 report.stderr)) == []
    if status == 400:
        errors = [o["error"] for o in last_outcomes(tmp_path / "results.jsonl").values()]
        assert errors and all("bad credentials" in e and "***" in e for e in errors)
    else:
        assert "***" in done.stderr


# -- read limit (issue 10 item 3) -----------------------------------------------------------

_RSS_SCRIPT = """
import asyncio, sys
import aiohttp
from bulkgroups.http.auth import auth_for
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import RetryPolicy
from bulkgroups.http.transport import Transport
from bulkgroups.model import TargetKind
from bulkgroups.secret import Secret
from tests.peak import peak_rss_kib

async def main():
    async with aiohttp.ClientSession() as s:
        t = Transport(s, base_url=sys.argv[1], auth=auth_for(TargetKind.DOCSPACE, Secret("sk-x")),
                      pacer=Pacer(rate=10, concurrency=1), policy=RetryPolicy(max_retries=2),
                      timeout_s=60)
        r = await t.send("GET", "/big")
        print(r.status, r.body_kind.value, r.attempts, r.error, sep="|")
    print(peak_rss_kib() // 1024)

asyncio.run(main())
"""


async def test_a_300_mb_answer_is_cut_at_the_limit_and_memory_stays_modest(
    srv: Hostile
) -> None:
    """A 300 MB chunked body: reading stops after the 16 MiB limit of a GET, the answer is
    an error (not retried: it would be as large again), and the process stays small."""
    srv.on("GET", "/big", hostile.huge(300 * 1024 * 1024))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RSS_SCRIPT, srv.url, cwd=Path(__file__).resolve().parents[1],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    first, rss_mb = out.decode().strip().splitlines()
    status, kind, attempts, error = first.split("|")
    assert (status, kind, attempts) == ("200", "too large", "1")
    assert "larger than 16 MiB" in error
    assert int(rss_mb) < 150, f"max RSS {rss_mb} MB"
    assert srv.sent_bytes < 100 * 1024 * 1024  # the client let go; the rest was never sent


async def test_a_change_answer_over_its_limit_is_an_error(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    """Non-GET answers have a 1 MiB limit (configurable per transport)."""
    srv.on("DELETE", "/x", hostile.huge(2 * 1024 * 1024))
    reply = await make_transport(srv, session).send("DELETE", "/x")
    assert reply.body_kind is BodyKind.TOO_LARGE and reply.error is not None
    assert "larger than 1 MiB" in (reply.error or "")


# -- stalls and abandon (issue 10 items 9 and 11) ----------------------------------------------


async def test_a_body_stalling_after_its_headers_is_a_timeout_and_retried(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    srv.on("GET", "/g", hostile.sequence(hostile.stall(3.0), hostile.json(200, {"ok": 1})))
    reply = await make_transport(srv, session, timeout_s=0.3).send("GET", "/g")
    assert (reply.status, reply.body, reply.attempts) == (200, {"ok": 1}, 2)


async def test_a_body_that_always_stalls_says_so(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    srv.on("GET", "/g", hostile.stall(3.0))
    reply = await make_transport(srv, session, timeout_s=0.2, retries=1).send("GET", "/g")
    assert (reply.status, reply.attempts) == (None, 2)
    assert reply.error == "the answer stalled after its headers (not whole within 0.2 s)"


async def test_abandon_ends_a_retry_after_600_wait_at_once(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    """A 429 with Retry-After: 600; abandon() → the waiting call raises Abandoned within a
    second, and nothing more is sent."""
    srv.fallback = hostile.empty(429, {"Retry-After": "600"})
    t = make_transport(srv, session)
    call = asyncio.create_task(t.send("GET", "/g"))
    other = asyncio.create_task(t.send("GET", "/h"))
    await srv.wait_for(1)
    while t.pacer.paused_s == 0:  # the client reads the 429 (loop turns, no timed sleep)
        await asyncio.sleep(0)
    start = time.monotonic()
    t.abandon()
    for task in (call, other):
        with pytest.raises(Abandoned):
            await asyncio.wait_for(task, 1.0)
    assert time.monotonic() - start < 1.0
    assert len(srv.requests) <= 2
    with pytest.raises(Abandoned):
        await t.send("GET", "/later")
    assert len(srv.requests) <= 2


async def test_abandon_wakes_a_request_waiting_for_a_slot_and_a_backoff(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    """Concurrency 1: one request on the wire (stalled), one waiting for the slot; and a
    transport in backoff. abandon() ends both waits at once; the one on the wire may finish."""
    srv.on("GET", "/slow", hostile.stall(0.5))
    srv.on("GET", "/flaky", hostile.empty(503))
    t = make_transport(srv, session, concurrency=1)
    wire = asyncio.create_task(t.send("GET", "/slow"))
    await srv.wait_for(1)
    queued = asyncio.create_task(t.send("GET", "/slow"))
    slow_policy = make_transport(srv, session, retries=5)
    slow_policy._policy = RetryPolicy(max_retries=5, base_s=100.0, cap_s=100.0)
    backoff = asyncio.create_task(slow_policy.send("GET", "/flaky"))
    await srv.wait_for(2)
    while len(srv.requests) < 2 or not backoff_started(slow_policy):
        await asyncio.sleep(0)
    t.abandon()
    slow_policy.abandon()
    start = time.monotonic()
    for task in (queued, backoff):
        with pytest.raises(Abandoned):
            await asyncio.wait_for(task, 1.0)
    assert time.monotonic() - start < 1.0
    assert (await wire).status == 200  # it was on the wire: it finished
    assert [r.path for r in srv.requests] == ["/slow", "/flaky"]


def backoff_started(t: Transport) -> bool:
    """The 503 was read (so the call is in, or about to enter, its 100 s backoff)."""
    return t.answers_received >= 1


async def test_requests_sent_counts_every_attempt(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    srv.on("GET", "/g", hostile.sequence(hostile.empty(503), hostile.html(502),
                                         hostile.json(200, {})))
    t = make_transport(srv, session)
    assert (await t.send("GET", "/g")).attempts == 3
    assert t.requests_sent == len(srv.requests) == 3


# -- 429s, proxies, tenants (issue 11 item 3) -----------------------------------------------


async def test_bare_429s_pause_growing_and_spend_no_retries(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    """Two bare 429s (no Retry-After, no body) then 200, with max_retries 0: the request
    succeeds; the pauses grow (0.1 s, then 0.2 s)."""
    srv.on("GET", "/g", hostile.sequence(hostile.empty(429), hostile.empty(429),
                                         hostile.json(200, {})))
    t = make_transport(srv, session, retries=0)
    reply = await t.send("GET", "/g")
    assert (reply.status, reply.attempts, reply.error) == (200, 3, None)
    at = [r.at for r in srv.requests]
    assert at[1] - at[0] >= 0.09 and at[2] - at[1] >= 0.19
    assert t.pacer.rate < 1000.0  # resumes slowly


async def test_bare_429s_are_bounded_by_the_wait_budget(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    srv.fallback = hostile.empty(429)
    t = make_transport(srv, session, window_start_s=0.05, limited_budget_s=0.3)
    reply = await t.send("GET", "/g")
    assert reply.status == 429
    assert (reply.error or "").startswith("rate limited: still refused after waiting")


async def test_x_ratelimit_reset_is_used(srv: Hostile, session: aiohttp.ClientSession) -> None:
    """A 429 with X-RateLimit-Reset as a Unix time: the pause lasts until then."""
    reset = int(time.time()) + 2
    srv.on("GET", "/g", hostile.sequence(
        hostile.empty(429, {"X-RateLimit-Reset": str(reset), "X-RateLimit-Remaining": "0"}),
        hostile.json(200, {})))
    reply = await make_transport(srv, session, retries=0).send("GET", "/g")
    assert reply.ok
    assert time.time() >= reset - 1.05  # waited for (most of) it, whole seconds on the wire
    assert srv.requests[1].at - srv.requests[0].at >= 0.9


@pytest.mark.parametrize(("handler", "error"), [
    (hostile.html(504), "HTTP 504 from a proxy (HTML page)"),
    (hostile.empty(502), "HTTP 502 from a proxy (empty body)"),
    (hostile.html(503, "<html>busy</html>"), "HTTP 503 from a proxy (HTML page)"),
])
async def test_html_and_empty_gateway_answers_are_retried_and_said(
    srv: Hostile, session: aiohttp.ClientSession, handler: hostile.Handler, error: str
) -> None:
    srv.fallback = handler
    reply = await make_transport(srv, session, retries=2).send("GET", "/g")
    assert (reply.attempts, reply.error) == (3, error)


async def test_a_504_to_a_write_is_retried_and_marked_uncertain(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    """The proxy gave up but the server may have finished: retried like a lost answer, and
    the Reply says the change may already have been made."""
    srv.on("DELETE", "/m", hostile.sequence(hostile.html(504), hostile.json(200, {"r": 1})))
    reply = await make_transport(srv, session).send("DELETE", "/m")
    assert (reply.status, reply.attempts, reply.uncertain) == (200, 2, True)
    srv.on("GET", "/n", hostile.sequence(hostile.html(504), hostile.json(200, {})))
    assert not (await make_transport(srv, session).send("GET", "/n")).uncertain


@pytest.mark.parametrize(("status", "message"), [
    (404, "the portal answers 404 with an empty body on every path: tenant suspended?"),
    (402, "402 payment required: the tenant is unpaid"),
])
async def test_a_suspended_or_unpaid_tenant_stops_the_run(
    tmp_path: Path, srv: Hostile, status: int, message: str
) -> None:
    srv.fallback = hostile.empty(status)
    done = await run_cli("run", str(job(tmp_path, srv, "docspace", n=20)), "--quiet",
                         token=DS_KEY)
    assert done.code == 3
    assert message in done.stderr
    assert len(srv.requests) <= 10  # a handful: the requests already under way


async def test_an_empty_404_after_a_success_is_only_that_row(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    srv.on("GET", "/ok", hostile.json(200, {}))
    srv.on("GET", "/gone", hostile.empty(404))
    t = make_transport(srv, session)
    assert (await t.send("GET", "/ok")).ok
    reply = await t.send("GET", "/gone")
    assert (reply.status, reply.body_kind, reply.error) == (404, BodyKind.EMPTY,
                                                            "HTTP 404 (empty body)")
    with pytest.raises(TenantRefused):
        await make_transport(srv, session).send("GET", "/gone")


async def test_a_cookie_the_server_sets_is_never_sent_back(
    tmp_path: Path, srv: Hostile
) -> None:
    """A stale `asc_auth_key` cookie would win over the header on DocSpace: the run's
    session has no cookie jar, so every request carries only the header."""
    answer = hostile.json(200, hostile.docspace_group(GID, []))
    srv.on("DELETE", DS_GROUP_PATH + "/members",
           hostile.set_cookie("asc_auth_key", "stale-cookie-value", answer))
    done = await run_cli("run", str(job(tmp_path, srv, "docspace", n=4,
                                        limits={"concurrency": 1})), "--quiet", token=DS_KEY)
    assert done.code == 0, done.stderr
    assert len(srv.requests) == 4
    assert all("Cookie" not in r.headers for r in srv.requests)
    assert all(r.headers["Authorization"] == f"Bearer {DS_KEY}" for r in srv.requests)


async def test_docspace_two_factor_sign_in_stops_with_a_clear_message(
    tmp_path: Path, srv: Hostile
) -> None:
    srv.on("POST", "/api/2.0/authentication", hostile.json(
        200, {"response": {"tfa": True, "sms": False, "confirmUrl": "x"}, "status": 0,
              "statusCode": 200}))
    done = await run_cli("run", str(job(tmp_path, srv, "docspace", signin=True)), "--quiet",
                         env=env_for("docspace", True))
    assert done.code == 3
    assert "two-factor" in done.stderr and "API key" in done.stderr
    assert [r.method for r in srv.requests] == ["POST"]


@pytest.mark.parametrize(("handler", "kind"), [
    (hostile.html(200, "<!DOCTYPE html><html>Sign in</html>"), BodyKind.HTML),
    (hostile.empty(200), BodyKind.EMPTY),
    (hostile.json(200, {"response": {}}), BodyKind.JSON),
])
async def test_reply_says_what_a_200_body_was(
    srv: Hostile, session: aiohttp.ClientSession, handler: hostile.Handler, kind: BodyKind
) -> None:
    """An SSO page or an empty 200 to a change is visible to the adapter (issue 10 item 7)."""
    srv.fallback = handler
    for decode in (True, False):
        reply = await make_transport(srv, session).send("PUT", "/m", decode=decode)
        assert (reply.status, reply.body_kind) == (200, kind)


async def test_truncated_json_is_not_json(srv: Hostile, session: aiohttp.ClientSession) -> None:
    async def cut(request: Any, body: bytes) -> Any:
        return aiohttp.web.Response(status=200, body=b'{"response": {"id": "ab',
                                    content_type="application/json")
    srv.fallback = cut
    reply = await make_transport(srv, session).send("GET", "/g")
    assert (reply.body, reply.body_kind) == (None, BodyKind.NOT_JSON)


async def test_401_echoing_the_token_is_scrubbed(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    srv.fallback = hostile.echo_credentials(401, shape="adaxes")
    with pytest.raises(AuthRefused) as caught:
        await make_transport(srv, session, kind=TargetKind.ADAXES).send("GET", "/g")
    assert AX_TOKEN not in str(caught.value) and "***" in str(caught.value)


def test_importing_the_pipeline_loads_no_aiohttp() -> None:
    """The engine (and the pure policy, scrubber and auth) import no HTTP client."""
    import subprocess

    code = ("import sys, bulkgroups.engine, bulkgroups.http.policy, bulkgroups.http.scrub; "
            "sys.exit('aiohttp' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_sign_in_goes_through_the_runs_transport_pacer_and_session(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    """The sign-in waits out the pacer's pause like any request, is counted in
    requests_sent, and a cookie its answer sets is never sent back (no jar): the next
    request carries only the signed-in token, bare in Authorization."""
    from bulkgroups.http.signin import Login, sign_in_for

    pat = "pat-" + "Zq9x" * 10
    srv.on("POST", "/api/2.0/authentication", hostile.set_cookie(
        "asc_auth_key", "stale-cookie-value", hostile.json(
            200, {"response": {"token": pat, "expires": "2099-01-01T00:00:00Z"},
                  "status": 0, "statusCode": 200})))
    srv.on("GET", DS_GROUP_PATH, hostile.json(200, hostile.docspace_group(GID, [UID])))
    # Concurrency 1: the worker holds the only slot while it waits for the sign-in, which
    # takes none (else this would deadlock).
    t = make_transport(srv, session, concurrency=1)
    async with sign_in_for(TargetKind.DOCSPACE, t, Login("a@b.c", Secret(PASSWORD))):
        loop = asyncio.get_running_loop()
        t.pacer.pause_for(0.3)
        start = loop.time()
        assert (await t.send("GET", DS_GROUP_PATH)).ok
        assert srv.requests[0].at - start >= 0.29  # the sign-in waited out the pause
    sign_in, read = srv.requests
    assert (sign_in.method, sign_in.path) == ("POST", "/api/2.0/authentication")
    assert "Authorization" not in sign_in.headers  # a sign-in carries no credential header
    assert read.headers["Authorization"] == pat and "Cookie" not in read.headers
    assert t.requests_sent == 2


async def test_a_sign_in_refusal_echoing_the_password_is_scrubbed(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    from bulkgroups.http.signin import Login, sign_in_for

    srv.fallback = hostile.echo_credentials(403, shape="adaxes")
    t = make_transport(srv, session, kind=TargetKind.ADAXES)
    async with sign_in_for(TargetKind.ADAXES, t, Login("EX\\a", Secret(PASSWORD))) as auth:
        with pytest.raises(AuthRefused) as caught:
            await auth.headers()
    assert PASSWORD not in str(caught.value) and "refused the sign-in (HTTP 403)" in str(
        caught.value)
    assert len(srv.requests) == 1  # never repeated


async def test_a_403_after_a_successful_sign_in_still_stops_the_run(
    srv: Hostile, session: aiohttp.ClientSession
) -> None:
    """A signed-in account that is not an administrator: sign-in 200, then 403 on the first
    data request — the run stops (a sign-in's 200 is not a data request's success)."""
    from bulkgroups.http.signin import Login, sign_in_for

    srv.on("POST", "/api/2.0/authentication", hostile.json(
        200, {"response": {"token": "pat-" + "Zq9x" * 10, "expires": "2099-01-01T00:00:00Z"},
              "status": 0, "statusCode": 200}))
    srv.fallback = hostile.json(403, {"status": 1, "statusCode": 403,
                                      "error": {"message": "Access denied"}})
    t = make_transport(srv, session)
    async with sign_in_for(TargetKind.DOCSPACE, t, Login("a@b.c", Secret(PASSWORD))):
        with pytest.raises(AuthRefused, match="403"):
            await t.send("DELETE", DS_GROUP_PATH + "/members", json={"members": [UID]})


async def test_a_docspace_change_answered_with_a_big_group_is_read(
    tmp_path: Path, srv: Hostile
) -> None:
    """DocSpace answers a removal with the whole group: 20,000 remaining members (~2 MB) is
    over the 1 MiB of a small answer, so DocSpace runs give member changes the read limit."""
    big = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(20000)]
    srv.on("DELETE", DS_GROUP_PATH + "/members",
           hostile.json(200, hostile.docspace_group(GID, big)))
    done = await run_cli("run", str(job(tmp_path, srv, "docspace")), "--quiet", token=DS_KEY)
    assert done.code == 0, done.stderr
    assert len(srv.requests) == 1
    assert {o["status"] for o in last_outcomes(tmp_path / "results.jsonl").values()} == {"ok"}
