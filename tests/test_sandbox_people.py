"""DocSpace's people search (GET /api/2.0/people/filter) and the proxy/tenant answers."""

from __future__ import annotations

from typing import Any

import aiohttp

from bulkgroups.sandbox import Faults, Sandbox, SandboxConfig, make_state


def first_group(state: dict[str, Any]) -> str:
    return next(iter(state["docspace"]["groups"]))


def kinds(state: dict[str, Any], uids: list[str]) -> list[str]:
    users = state["docspace"]["users"]
    return [users[u]["kind"] for u in uids]


async def people(http: aiohttp.ClientSession, sb: Sandbox, ds_auth, **params: Any) -> Any:
    url = f"{sb.base_url}/api/2.0/people/filter"
    async with http.get(url, params={k: str(v) for k, v in params.items()}, headers=ds_auth) as r:
        assert r.status == 200, params
        return await r.json()


async def test_filter_by_group_finds_terminated_members(sandbox: Sandbox, http, state, ds_auth):
    """groupId lists every member, terminated ones too (the group read hides them), active
    first; employeeStatus=2 gives only the terminated, 1 only the active."""
    gid = first_group(state)
    inside = state["docspace"]["groups"][gid]["members"]
    body = await people(http, sandbox, ds_auth, groupId=gid)
    got = [u["id"] for u in body["response"]]
    assert sorted(got) == sorted(inside)
    assert body["total"] == len(inside)
    assert kinds(state, got)[-2:] == ["terminated", "terminated"]
    assert {u["status"] for u in body["response"]} == {1, 2}
    gone = await people(http, sandbox, ds_auth, groupId=gid, employeeStatus=2)
    assert sorted(u["id"] for u in gone["response"]) == sorted(
        u for u in inside if kinds(state, [u]) == ["terminated"]
    )
    assert all(u["status"] == 2 for u in gone["response"])
    active = await people(http, sandbox, ds_auth, groupId=gid, employeeStatus="Active")
    assert "terminated" not in kinds(state, [u["id"] for u in active["response"]])


async def test_filter_by_type_and_paging(sandbox: Sandbox, http, state, ds_auth):
    """employeeType=2 (Guest) gives the guests; count/startIndex page through with a total;
    count outside 1..100 is a 400."""
    guests = await people(http, sandbox, ds_auth, employeeType=2)
    assert set(kinds(state, [u["id"] for u in guests["response"]])) == {"guest"}
    assert all(u["isVisitor"] is True for u in guests["response"])
    users = await people(http, sandbox, ds_auth, employeeTypes="User")
    assert "guest" not in kinds(state, [u["id"] for u in users["response"]])
    total = len(state["docspace"]["users"])
    seen: list[str] = []
    for start in range(0, total, 40):
        page = await people(http, sandbox, ds_auth, count=40, startIndex=start)
        assert page["total"] == total
        assert page["count"] == len(page["response"]) <= 40
        seen += [u["id"] for u in page["response"]]
    assert sorted(seen) == sorted(state["docspace"]["users"])
    for bad in (0, 101):
        url = f"{sandbox.base_url}/api/2.0/people/filter?count={bad}"
        async with http.get(url, headers=ds_auth) as r:
            assert r.status == 400
            assert (await r.json())["response"]["errors"]


async def test_nginx_pages(sandbox: Sandbox, http, state, ds_auth):
    """Injected 502, 503 and 504 come as nginx's HTML pages."""
    url = f"{sandbox.base_url}/api/2.0/group"
    for status, title in ((502, "502 Bad Gateway"), (504, "504 Gateway Time-out")):
        sandbox.inject(status=status)
        async with http.get(url, headers=ds_auth) as r:
            assert r.status == status
            assert r.content_type == "text/html"
            text = await r.text()
        assert f"<title>{title}</title>" in text
        assert "nginx" in text


async def test_504_after_apply(sandbox: Sandbox, http, state, ds_auth):
    """The proxy times out while the server finishes: 504 page, change applied."""
    gid = first_group(state)
    gone = state["docspace"]["groups"][gid]["members"][0]
    sandbox.inject(status=504, after_apply=True)
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    async with http.delete(url, json={"members": [gone]}, headers=ds_auth) as r:
        assert r.status == 504
        assert r.content_type == "text/html"
    assert gone not in sandbox.dump()["docspace"]["groups"][gid]["members"]


async def test_random_timeout_after_apply(start_sandbox, http, ds_auth):
    """timeout_after_apply_ratio=1: every change is applied and answered with the 504 page."""
    sb = await start_sandbox(config=SandboxConfig(faults=Faults(timeout_after_apply_ratio=1.0)))
    state = sb.dump()
    gid = first_group(state)
    gone = state["docspace"]["groups"][gid]["members"][:2]
    url = f"{sb.base_url}/api/2.0/group/{gid}/members"
    async with http.delete(url, json={"members": gone}, headers=ds_auth) as r:
        assert r.status == 504
        assert "nginx" in await r.text()
    assert not set(gone) & set(sb.dump()["docspace"]["groups"][gid]["members"])


async def test_tenant_modes(sandbox: Sandbox, http, state, ds_auth, ax_auth):
    """suspended: 404, unpaid: 402, transferring: 403, all with an empty body on every DocSpace
    path (sign-in and unknown paths too); switchable live, by config and by the control
    endpoint; Adaxes is not affected."""
    gid = first_group(state)
    paths = [f"/api/2.0/group/{gid}", "/api/2.0/group", "/api/2.0/nothing-here"]
    for mode, status in (("suspended", 404), ("unpaid", 402), ("transferring", 403)):
        async with http.post(f"{sandbox.base_url}/_sandbox/tenant", json={"mode": mode}) as r:
            assert (await r.json()) == {"mode": mode}
        for path in paths:
            async with http.get(sandbox.base_url + path, headers=ds_auth) as r:
                assert (r.status, await r.read()) == (status, b""), (mode, path)
        sign_in = {"userName": "admin@example.com", "password": "test-password"}
        async with http.post(f"{sandbox.base_url}/api/2.0/authentication", json=sign_in) as r:
            assert (r.status, await r.read()) == (status, b"")
        group = next(dn for dn, o in state["adaxes"]["objects"].items() if o["type"] == "group")
        url = sandbox.adaxes_url + "/api/directoryObjects/groupMembers"
        async with http.get(url, params={"group": group}, headers=ax_auth) as r:
            assert r.status == 200
    sandbox.set_tenant("active")
    async with http.get(sandbox.base_url + paths[0], headers=ds_auth) as r:
        assert r.status == 200
    sandbox.config.tenant = "unpaid"
    async with http.get(sandbox.base_url + paths[0], headers=ds_auth) as r:
        assert r.status == 402
    async with http.post(f"{sandbox.base_url}/_sandbox/tenant", json={"mode": "x"}) as r:
        assert r.status == 400


async def test_sign_in_refused_after_repeated_failures(start_sandbox, http):
    """Five wrong passwords, then the right one is refused with 403."""
    sb = await start_sandbox(make_state())
    url = f"{sb.base_url}/api/2.0/authentication"
    for _ in range(5):
        async with http.post(url, json={"userName": "admin@example.com", "password": "x"}) as r:
            assert r.status == 401
    good = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(url, json=good) as r:
        assert r.status == 403
