"""The request log and the /_sandbox/* control endpoints."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest

from bulkgroups.sandbox import Faults, LogEntry, Sandbox, SandboxConfig


async def test_log_fields(sandbox: Sandbox, http, state, ds_auth, ax_auth):
    """Each finished request is logged with its method, path, query, status, api and token label."""
    before = time.monotonic()
    gid = next(iter(state["docspace"]["groups"]))
    async with http.get(
        f"{sandbox.base_url}/api/2.0/group/{gid}?includeMembers=false", headers=ds_auth
    ) as r:
        assert r.status == 200
    async with http.delete(
        f"{sandbox.base_url}/api/2.0/group/{gid}/members", json={"members": []}, headers=ds_auth
    ):
        pass
    async with http.get(f"{sandbox.base_url}/api/2.0/group"):
        pass
    group = next(dn for dn, o in state["adaxes"]["objects"].items() if o["type"] == "group")
    url = f"{sandbox.adaxes_url}/api/directoryObjects/groupMembers"
    async with http.get(url, params={"group": group}, headers=ax_auth):
        pass
    body = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(f"{sandbox.base_url}/api/2.0/authentication", json=body):
        pass
    log = sandbox.log
    assert [(e.method, e.status, e.api, e.token) for e in log] == [
        ("GET", 200, "docspace", "sk-t…"),
        ("DELETE", 200, "docspace", "sk-t…"),
        ("GET", 401, "docspace", ""),
        ("GET", 200, "adaxes", "adm-…"),
        ("POST", 200, "auth", ""),
    ]
    first = log[0]
    assert isinstance(first, LogEntry)
    assert first.path == f"/api/2.0/group/{gid}"
    assert first.query == "includeMembers=false"
    assert log[3].path == "/restApi/api/directoryObjects/groupMembers"
    assert log[3].query.startswith("group=CN%3DSales")
    assert [e.writes_in_flight for e in log] == [0, 1, 0, 0, 1]
    assert all(before <= e.start <= e.end <= time.monotonic() for e in log)
    assert all(a.end <= b.start for a, b in itertools.pairwise(log))


async def test_control_log_endpoints(sandbox: Sandbox, http, ds_auth):
    """GET /_sandbox/log lists entries (unlogged itself); DELETE clears it; clear_log() too."""
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth):
        pass
    async with http.get(f"{sandbox.base_url}/_sandbox/log") as r:
        assert r.status == 200
        entries = [LogEntry.from_json(e) for e in await r.json()]
    assert entries == sandbox.log
    assert len(entries) == 1
    async with http.get(f"{sandbox.base_url}/_sandbox/log?since=1") as r:
        assert await r.json() == []
    async with http.delete(f"{sandbox.base_url}/_sandbox/log") as r:
        assert r.status == 204
    assert sandbox.log == []
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth):
        pass
    sandbox.clear_log()
    assert sandbox.log == []


async def test_control_state(sandbox: Sandbox, http, state, ds_auth):
    """GET /_sandbox/state is the same as dump(), which starts equal to the input state."""
    assert sandbox.dump() == state
    gid = next(iter(state["docspace"]["groups"]))
    gone = state["docspace"]["groups"][gid]["members"][:1]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    async with http.delete(url, json={"members": gone}, headers=ds_auth):
        pass
    async with http.get(f"{sandbox.base_url}/_sandbox/state") as r:
        dumped = await r.json()
    assert dumped == sandbox.dump() != state


async def test_control_inject(sandbox: Sandbox, http, ds_auth):
    """POST /_sandbox/inject queues forced answers; a bad body is 400; control is never faulted."""
    async with http.post(
        f"{sandbox.base_url}/_sandbox/inject",
        json={"status": 503, "count": 2, "retry_after_s": 1.5, "api": "docspace"},
    ) as r:
        assert r.status == 200
        assert (await r.json())["pending"] == 2
    for _ in range(2):
        async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth) as r:
            assert r.status == 503
            assert r.content_type == "text/html"  # nginx's page, not a DocSpace answer
            assert "nginx" in await r.text()
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth) as r:
        assert r.status == 200
    for bad in ({"count": 1}, {"status": 429, "api": "x"}, {"status": "x"}, [1]):
        async with http.post(f"{sandbox.base_url}/_sandbox/inject", json=bad) as r:
            assert r.status == 400, bad
    sandbox.inject(status=0, count=5)
    async with http.get(f"{sandbox.base_url}/_sandbox/state") as r:
        assert r.status == 200


async def test_control_expire_tokens(sandbox: Sandbox, http):
    """POST /_sandbox/expire-tokens expires signed-in tokens."""
    body = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(f"{sandbox.base_url}/api/2.0/authentication", json=body) as r:
        token = (await r.json())["response"]["token"]
    async with http.post(f"{sandbox.base_url}/_sandbox/expire-tokens") as r:
        assert r.status == 200
        assert (await r.json())["expired"] == 1
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers={"Authorization": token}) as r:
        assert r.status == 401


async def test_sandbox_urls_and_restart(state):
    """base_url/adaxes_url point at the bound port; a sandbox can be started many times."""
    ports = set()
    for _ in range(3):
        async with Sandbox(state) as sb:
            assert sb.base_url == f"http://127.0.0.1:{sb.port}"
            assert sb.adaxes_url == sb.base_url + "/restApi"
            ports.add(sb.port)
    assert all(p > 0 for p in ports)


async def test_stops_cleanly_with_a_request_in_flight(state, ds_auth):
    """Leaving the context with a request held by latency ends it quickly, without warnings."""
    async with aiohttp.ClientSession() as http:
        config = SandboxConfig(faults=Faults(latency_ms=30_000))
        started = time.monotonic()
        async with Sandbox(state, config=config) as sb:
            url = f"{sb.base_url}/api/2.0/group/{next(iter(state['docspace']['groups']))}/members"
            pending = asyncio.create_task(http.post(url, json={"members": []}, headers=ds_auth))
            deadline = time.monotonic() + 5
            while sb.in_flight == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert sb.in_flight == 1
        assert time.monotonic() - started < 5
        with pytest.raises(aiohttp.ClientConnectionError):
            await pending
    assert [e.status for e in sb.log] == [0]
    assert sb.in_flight == 0


async def test_wait_for_requests_wakes_when_the_log_grows(sandbox: Sandbox, http, ds_auth):
    """wait_for_requests(n) is still waiting at n - 1 entries and returns at the n-th,
    whatever the status (a refused request counts); at or under the size it returns at once."""
    url = f"{sandbox.base_url}/api/2.0/group"
    waiters = [asyncio.create_task(sandbox.wait_for_requests(n)) for n in (1, 3)]
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 200
    await asyncio.wait_for(waiters[0], 5)
    async with http.get(url) as r:
        assert r.status == 401
    assert not waiters[1].done()
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 200
    await asyncio.wait_for(waiters[1], 5)
    assert len(sandbox.log) == 3
    await asyncio.wait_for(sandbox.wait_for_requests(3), 5)
    await asyncio.wait_for(sandbox.wait_for_requests(0), 5)


async def test_wait_for_requests_times_out(sandbox: Sandbox, http, ds_auth):
    """Too few requests within timeout_s: TimeoutError saying how many arrived; a later
    wait still works, and the count starts again after clear_log()."""
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth) as r:
        assert r.status == 200
    with pytest.raises(TimeoutError, match="1 of 2 requests"):
        await sandbox.wait_for_requests(2, timeout_s=0.05)
    sandbox.clear_log()
    waiting = asyncio.create_task(sandbox.wait_for_requests(1))
    async with http.get(f"{sandbox.base_url}/api/2.0/group", headers=ds_auth) as r:
        assert r.status == 200
    await asyncio.wait_for(waiting, 5)


async def test_wait_for_requests_counts_dropped_requests(sandbox: Sandbox, http, ds_auth):
    """A request whose connection is dropped is logged too, and wakes the waiter."""
    sandbox.inject(status=0, api="docspace")
    waiting = asyncio.create_task(sandbox.wait_for_requests(1, timeout_s=5))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(
            f"{sandbox.base_url}/api/2.0/group/{'0' * 8}-0000-4000-8000-{'0' * 12}/members",
            json={"members": []},
            headers=ds_auth,
        ) as r:
            await r.read()
    await waiting
    assert [e.status for e in sandbox.log] == [0]


async def test_control_inject_after_apply(sandbox: Sandbox, http, state, ds_auth):
    """POST /_sandbox/inject takes after_apply (a boolean, with status 0 or 502/503/504)."""
    for bad in ({"status": 0, "after_apply": "yes"}, {"status": 429, "after_apply": True}):
        async with http.post(f"{sandbox.base_url}/_sandbox/inject", json=bad) as r:
            assert r.status == 400, bad
    async with http.post(
        f"{sandbox.base_url}/_sandbox/inject", json={"status": 0, "after_apply": True}
    ) as r:
        assert (r.status, await r.json()) == (200, {"pending": 1})
    gid = next(iter(state["docspace"]["groups"]))
    users = state["docspace"]["users"]
    inside = state["docspace"]["groups"][gid]["members"]
    kept = next(u for u in inside if users[u]["kind"] == "user")
    hidden = [u for u in inside if users[u]["kind"] == "terminated"]
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(  # replace the members; a POST aiohttp never resends on its own
            f"{sandbox.base_url}/api/2.0/group/{gid}/members",
            json={"members": [kept]},
            headers=ds_auth,
        ) as r:
            await r.read()
    assert sandbox.dump()["docspace"]["groups"][gid]["members"] == [*hidden, kept]
    assert [e.status for e in sandbox.log] == [0]
