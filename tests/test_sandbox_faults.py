"""Fault injection: seeded random faults, dropped connections, lost answers, inject()."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bulkgroups.sandbox import Faults, Sandbox, SandboxConfig, make_state

MEMBERS = "/api/directoryObjects/groupMembers"


def first_group(state: dict[str, Any]) -> str:
    return next(iter(state["docspace"]["groups"]))


def ax_group(state: dict[str, Any]) -> str:
    return next(dn for dn, o in state["adaxes"]["objects"].items() if o["type"] == "group")


async def send(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> int:
    async with http.request(method, url, **kwargs) as r:
        await r.read()
        return r.status


async def statuses(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int
) -> list[int]:
    out = []
    for _ in range(n):
        async with http.get(url, headers=headers) as r:
            out.append(r.status)
            if r.status == 503:  # nginx's page: HTML, no Retry-After
                assert r.content_type == "text/html"
                assert "Retry-After" not in r.headers
    return out


async def test_503_ratio_is_seeded(sandbox: Sandbox, http, ds_auth):
    """error_503_ratio gives about that share of 503s, exactly the same again with the same seed."""
    url = f"{sandbox.base_url}/api/2.0/group?count=1"
    sandbox.config.faults = Faults(seed=7, error_503_ratio=0.3)
    first = await statuses(http, url, ds_auth, 200)
    assert set(first) == {200, 503}
    assert 40 <= first.count(503) <= 80
    sandbox.config.faults = Faults(seed=7, error_503_ratio=0.3)
    assert await statuses(http, url, ds_auth, 200) == first
    sandbox.config.faults = Faults(seed=8, error_503_ratio=0.3)
    assert await statuses(http, url, ds_auth, 200) != first


async def test_429_ratio_with_retry_after(sandbox: Sandbox, http, state, ds_auth, ax_auth):
    """ratelimit_429_ratio answers 429 with the configured Retry-After on both APIs."""
    sandbox.config.faults = Faults(ratelimit_429_ratio=1.0, retry_after_s=3)
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "3"
        assert (await r.json())["statusCode"] == 429
    params = {"group": ax_group(state)}
    async with http.get(sandbox.adaxes_url + MEMBERS, params=params, headers=ax_auth) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "3"
        assert (await r.json())["code"] == "tooManyRequests"
    sandbox.config.faults = Faults(seed=1, ratelimit_429_ratio=0.5, retry_after_s=0.25)
    got = []
    for _ in range(100):
        async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth) as r:
            got.append(r.status)
            if r.status == 429:
                assert r.headers["Retry-After"] == "0.25"
    assert 30 <= got.count(429) <= 70


async def test_drop_is_a_connection_error(sandbox: Sandbox, http, state, ds_auth, ax_auth):
    """drop_ratio closes the connection unanswered: the client raises, nothing is applied."""
    sandbox.config.faults = Faults(drop_ratio=1.0)
    group = ax_group(state)
    member = state["adaxes"]["objects"][group]["members"][0]
    params = {"group": group, "member": member}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(http, "DELETE", sandbox.adaxes_url + MEMBERS, params=params, headers=ax_auth)
    gid = first_group(state)
    gone = state["docspace"]["groups"][gid]["members"][:1]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    with pytest.raises(aiohttp.ClientConnectionError):
        await send(http, "DELETE", url, json={"members": gone}, headers=ds_auth)
    assert sandbox.dump() == state
    assert {e.status for e in sandbox.log} == {0}
    sandbox.config.faults = Faults()
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth) as r:
        assert r.status == 200  # the server goes on serving


async def test_drop_after_apply_loses_the_answer(sandbox: Sandbox, http, state, ds_auth, ax_auth):
    """drop_after_apply_ratio applies the change, then closes the connection unanswered."""
    sandbox.config.faults = Faults(drop_after_apply_ratio=1.0)
    group = ax_group(state)
    outsider = next(
        dn
        for dn, o in state["adaxes"]["objects"].items()
        if o["type"] == "user" and dn not in state["adaxes"]["objects"][group]["members"]
    )
    body = {"group": group, "newMember": outsider}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(http, "POST", sandbox.adaxes_url + MEMBERS, json=body, headers=ax_auth)
    assert outsider in sandbox.dump()["adaxes"]["objects"][group]["members"]
    gid = first_group(state)
    gone = state["docspace"]["groups"][gid]["members"][0]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    with pytest.raises(aiohttp.ClientConnectionError):
        await send(http, "DELETE", url, json={"members": [gone]}, headers=ds_auth)
    assert gone not in sandbox.dump()["docspace"]["groups"][gid]["members"]
    assert sandbox.log[0].status == 0
    assert sandbox.log[0].method == "POST"


async def test_latency_shows_in_log(start_sandbox, http, ds_auth):
    """latency_ms holds each request at least that long, as the log's end - start shows."""
    sb = await start_sandbox(config=SandboxConfig(faults=Faults(latency_ms=120, jitter_ms=30)))
    for _ in range(3):
        async with http.get(f"{sb.base_url}/api/2.0/group", headers=ds_auth) as r:
            assert r.status == 200
    durations = [e.end - e.start for e in sb.log]
    assert len(durations) == 3
    assert all(0.115 <= d < 2.0 for d in durations)


async def test_faults_spare_sign_in(sandbox: Sandbox, http):
    """Faults never touch sign-in requests."""
    sandbox.config.faults = Faults(drop_ratio=1.0, error_503_ratio=1.0)
    body = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(f"{sandbox.base_url}/api/2.0/authentication", json=body) as r:
        assert r.status == 200
    body = {"username": "EXAMPLE\\admin", "password": "test-password"}
    async with http.post(f"{sandbox.adaxes_url}/api/authSessions/create", json=body) as r:
        assert r.status == 200


async def test_inject(sandbox: Sandbox, http, state, ds_auth, ax_auth):
    """inject() forces the next answers of one API, with Retry-After, then stops."""
    sandbox.inject(status=503, count=2, retry_after_s=2.0, api="adaxes")
    url = f"{sandbox.base_url}/api/2.0/group"
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 200
    params = {"group": ax_group(state)}
    got = []
    for _ in range(3):
        async with http.get(sandbox.adaxes_url + MEMBERS, params=params, headers=ax_auth) as r:
            got.append((r.status, r.headers.get("Retry-After")))
    assert got == [(503, "2"), (503, "2"), (200, None)]
    sandbox.inject(status=429, count=1)
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 429
        assert "Retry-After" not in r.headers
        assert (await r.json())["statusCode"] == 429
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 200


async def test_inject_drop_and_auth(sandbox: Sandbox, http, ds_auth):
    """inject(status=0) drops the connection; api="auth" targets sign-in only."""
    sandbox.inject(status=0, count=1, api="docspace")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(
            f"{sandbox.base_url}/api/2.0/group/00000000-0000-4000-8000-000000000001/members",
            json={"members": []},
            headers=ds_auth,
        ) as r:
            await r.read()
    sandbox.inject(status=502, api="auth")
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth) as r:
        assert r.status == 200
    body = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(f"{sandbox.base_url}/api/2.0/authentication", json=body) as r:
        assert r.status == 502
    with pytest.raises(ValueError, match="status"):
        sandbox.inject(status=42)
    with pytest.raises(ValueError, match="api"):
        sandbox.inject(status=429, api="ldap")


def test_faults_are_repeatable_without_http():
    """The same seed draws the same faults (FaultBox, no server)."""
    from bulkgroups.sandbox.faults import FaultBox

    def run(seed: int) -> list[object]:
        box, faults = FaultBox(), Faults(seed=seed, error_503_ratio=0.2, jitter_ms=5)
        return [box.draw(faults) for _ in range(50)]

    assert run(3) == run(3)
    assert run(3) != run(4)
    assert FaultBox().draw(Faults()) is None
    assert make_state(seed=3) == make_state(seed=3)


@pytest.fixture
async def no_resend():
    """A client that never resends a request on its own after a dropped connection (aiohttp
    repeats a GET, PUT or DELETE once by default, which would hide the lost answer)."""
    async with aiohttp.ClientSession() as session:
        session._retry_connection = False  # what aiohttp's own test client sets
        yield session


async def test_inject_after_apply_loses_the_answer(
    sandbox: Sandbox, no_resend, state, ds_auth, ax_auth
):
    """inject(0, after_apply=True): the next request is applied, then dropped unanswered;
    the one after is answered as usual, and the Adaxes repeat meets the changed state."""
    gid = first_group(state)
    gone = state["docspace"]["groups"][gid]["members"][0]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    sandbox.inject(status=0, after_apply=True, api="docspace")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(no_resend, "DELETE", url, json={"members": [gone]}, headers=ds_auth)
    assert gone not in sandbox.dump()["docspace"]["groups"][gid]["members"]
    assert await send(no_resend, "DELETE", url, json={"members": [gone]}, headers=ds_auth) == 200
    group = ax_group(state)
    member = state["adaxes"]["objects"][group]["members"][0]
    params = {"group": group, "member": member}
    ax_url = sandbox.adaxes_url + MEMBERS
    sandbox.inject(status=0, after_apply=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(no_resend, "DELETE", ax_url, params=params, headers=ax_auth)
    assert member not in sandbox.dump()["adaxes"]["objects"][group]["members"]
    async with no_resend.delete(ax_url, params=params, headers=ax_auth) as r:
        result = await r.json()
    assert (r.status, result["resultType"]) == (200, 1)
    assert [e.status for e in sandbox.log] == [0, 200, 0, 200]


async def test_inject_after_apply_count_and_checks(start_sandbox, no_resend, ds_auth):
    """after_apply covers `count` requests; each still passes the usual checks (a wrong key
    changes nothing) and no random fault stands in its way; it needs status 0 or 502..504."""
    sb = await start_sandbox(config=SandboxConfig(faults=Faults(error_503_ratio=1.0)))
    state = sb.dump()
    gid = first_group(state)
    first, second = state["docspace"]["groups"][gid]["members"][:2]
    url = f"{sb.base_url}/api/2.0/group/{gid}/members"
    sb.inject(status=0, count=3, after_apply=True, api="docspace")
    wrong = {"Authorization": "Bearer sk-wrong"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(no_resend, "DELETE", url, json={"members": [first]}, headers=wrong)
    assert sb.dump() == state  # refused by the key check: nothing applied
    for who in (first, second):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await send(no_resend, "DELETE", url, json={"members": [who]}, headers=ds_auth)
    assert not {first, second} & set(sb.dump()["docspace"]["groups"][gid]["members"])
    assert await send(no_resend, "GET", url[: -len("/members")], headers=ds_auth) == 503
    assert [e.status for e in sb.log] == [0, 0, 0, 503]
    with pytest.raises(ValueError, match="after_apply"):
        sb.inject(status=429, after_apply=True)
