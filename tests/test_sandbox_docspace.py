"""The DocSpace emulator over real HTTP: envelopes, status codes, membership quirks, sign-in."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import aiohttp

from bulkgroups.sandbox import Sandbox, SandboxConfig, make_state

UNKNOWN = "00000000-0000-4000-8000-000000000001"


def groups(state: dict[str, Any]) -> list[str]:
    return list(state["docspace"]["groups"])


def members(state: dict[str, Any], gid: str) -> list[str]:
    return list(state["docspace"]["groups"][gid]["members"])


def non_members(state: dict[str, Any], gid: str, kind: str = "user") -> list[str]:
    inside = set(members(state, gid))
    users = state["docspace"]["users"]
    return [u for u, v in users.items() if v["kind"] == kind and u not in inside]


async def test_read_group_envelope(sandbox: Sandbox, http: aiohttp.ClientSession, state, ds_auth):
    """GET group answers the success envelope with a GroupDto and every member."""
    gid = groups(state)[0]
    async with http.get(f"{sandbox.base_url}/api/2.0/group/{gid}", headers=ds_auth) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        body = await r.json()
    assert body["status"] == 0
    assert body["statusCode"] == 200
    assert body["count"] == 1
    assert body["links"] == []
    dto = body["response"]
    assert list(dto) == ["id", "name", "manager", "members", "isLDAP"]
    assert dto["id"] == gid
    assert dto["manager"] is None
    assert dto["isLDAP"] is False
    assert [m["id"] for m in dto["members"]] == members(state, gid)
    names = state["docspace"]["users"]
    assert all(m["displayName"] == names[m["id"]]["name"] for m in dto["members"])


async def test_read_group_without_members(sandbox: Sandbox, http, state, ds_auth):
    """includeMembers=false leaves the member list out."""
    gid = groups(state)[0]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}?includeMembers=false"
    async with http.get(url, headers=ds_auth) as r:
        assert "members" not in (await r.json())["response"]


async def test_unknown_group_is_404_envelope(sandbox: Sandbox, http, ds_auth):
    """An unknown or non-UUID group id gives the 404 error envelope on read and on change."""
    for gid in (UNKNOWN, "not-a-uuid"):
        async with http.get(f"{sandbox.base_url}/api/2.0/group/{gid}", headers=ds_auth) as r:
            assert r.status == 404
            body = await r.json()
        assert body["status"] == 1
        assert body["statusCode"] == 404
        assert body["error"]["message"]
    url = f"{sandbox.base_url}/api/2.0/group/{UNKNOWN}/members"
    async with http.delete(url, json={"members": []}, headers=ds_auth) as r:
        assert r.status == 404


async def test_unknown_route_is_404_envelope(sandbox: Sandbox, http, ds_auth):
    """A path the API does not have answers 404 in the DocSpace error shape."""
    async with http.get(f"{sandbox.base_url}/api/2.0/nothing", headers=ds_auth) as r:
        assert r.status == 404
        assert (await r.json())["statusCode"] == 404


async def test_remove_members(sandbox: Sandbox, http, state, ds_auth):
    """DELETE members removes several at once and returns the group with the rest."""
    gid = groups(state)[0]
    gone = members(state, gid)[:3]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    async with http.delete(url, json={"members": gone}, headers=ds_auth) as r:
        assert r.status == 200
        body = await r.json()
    left = [m["id"] for m in body["response"]["members"]]
    assert left == members(state, gid)[3:]
    assert sandbox.dump()["docspace"]["groups"][gid]["members"] == left


async def test_remove_is_idempotent(sandbox: Sandbox, http, state, ds_auth):
    """Removing again, a non-member, an unknown id, a non-UUID or nothing changes nothing."""
    gid = groups(state)[0]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    first = members(state, gid)[0]
    async with http.delete(url, json={"members": [first]}, headers=ds_auth) as r:
        assert r.status == 200
    before = sandbox.dump()
    outsider = non_members(state, gid)[0]
    for ids in ([first], [outsider], [UNKNOWN], ["junk"], []):
        async with http.delete(url, json={"members": ids}, headers=ds_auth) as r:
            assert r.status == 200, ids
            assert (await r.json())["status"] == 0
    assert sandbox.dump() == before


async def test_malformed_body_is_400(sandbox: Sandbox, http, state, ds_auth):
    """A body that is not JSON, lacks members, or has a non-list is refused with 400."""
    url = f"{sandbox.base_url}/api/2.0/group/{groups(state)[0]}/members"
    bodies: list[dict[str, Any]] = [
        {"data": b"{nope"},
        {"json": {}},
        {"json": {"members": "abc"}},
        {"json": {"members": [1, 2]}},
        {"json": ["a"]},
    ]
    for kwargs in bodies:
        async with http.delete(url, headers=ds_auth, **kwargs) as r:
            assert r.status == 400, kwargs
            body = await r.json()
        assert body["status"] == 1
        assert body["statusCode"] == 400


async def test_move_all_quirk(start_sandbox, http, ds_auth):
    """Move-all empties the source; only kind "user" joins the destination."""
    state = make_state(guests=2, terminated=2)
    src, dst = list(state["docspace"]["groups"])[:2]
    state["docspace"]["groups"][src]["members"].append(UNKNOWN)
    sb = await start_sandbox(state)
    users = state["docspace"]["users"]
    moved = members(state, src)
    url = f"{sb.base_url}/api/2.0/group/{src}/members/{dst}"
    async with http.put(url, headers=ds_auth) as r:
        assert r.status == 200
        body = await r.json()
    assert body["response"]["id"] == dst
    after = sb.dump()["docspace"]["groups"]
    assert after[src]["members"] == []
    joined = set(after[dst]["members"]) - set(members(state, dst))
    expected = {u for u in moved if u in users and users[u]["kind"] == "user"}
    assert joined == expected - set(members(state, dst))
    odd = {u for u in moved if u not in users or users[u]["kind"] != "user"}
    assert len(odd) == 5
    assert not odd & set(after[dst]["members"])


async def test_move_all_missing_group_is_404(sandbox: Sandbox, http, state, ds_auth):
    """Move-all with either group unknown is 404 and changes nothing."""
    gid = groups(state)[0]
    for a, b in ((gid, UNKNOWN), (UNKNOWN, gid)):
        async with http.put(
            f"{sandbox.base_url}/api/2.0/group/{a}/members/{b}", headers=ds_auth
        ) as r:
            assert r.status == 404
    assert sandbox.dump()["docspace"] == state["docspace"]


async def test_add_members_skips_invalid(start_sandbox, http, ds_auth):
    """PUT members adds users and guests; terminated, unknown and junk ids are skipped."""
    state = make_state(guests=1, terminated=1)
    gid = list(state["docspace"]["groups"])[1]
    sb = await start_sandbox(state)
    user = non_members(state, gid)[0]
    guest = non_members(state, gid, "guest")[0]
    gone = non_members(state, gid, "terminated")[0]
    ids = [user.upper(), guest, gone, UNKNOWN, "junk"]
    async with http.put(
        f"{sb.base_url}/api/2.0/group/{gid}/members", json={"members": ids}, headers=ds_auth
    ) as r:
        assert r.status == 200
        got = [m["id"] for m in (await r.json())["response"]["members"]]
    assert got == [*members(state, gid), user, guest]


async def test_update_adds_then_removes(sandbox: Sandbox, http, state, ds_auth):
    """PUT group applies membersToAdd before membersToRemove."""
    gid = groups(state)[0]
    both, only_add = non_members(state, gid)[:2]
    only_remove = members(state, gid)[0]
    body = {"membersToAdd": [both, only_add], "membersToRemove": [both, only_remove]}
    async with http.put(f"{sandbox.base_url}/api/2.0/group/{gid}", json=body, headers=ds_auth) as r:
        assert r.status == 200
        got = {m["id"] for m in (await r.json())["response"]["members"]}
    assert only_add in got
    assert both not in got
    assert only_remove not in got


async def test_replace_members(sandbox: Sandbox, http, state, ds_auth):
    """POST members replaces the list; 400 when none of the ids is valid."""
    gid = groups(state)[0]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    async with http.post(url, json={"members": [UNKNOWN]}, headers=ds_auth) as r:
        assert r.status == 400
    new = non_members(state, gid)[:2]
    async with http.post(url, json={"members": [*new, UNKNOWN]}, headers=ds_auth) as r:
        assert r.status == 200
    assert sandbox.dump()["docspace"]["groups"][gid]["members"] == new


async def test_list_paging_and_total(start_sandbox, http, ds_auth):
    """The group list pages at most 100, reports the total and carries no members."""
    sb = await start_sandbox(make_state(docspace_groups=130, docspace_members=2))
    seen: list[str] = []
    for start in (0, 100):
        url = f"{sb.base_url}/api/2.0/group?count=500&startIndex={start}"
        async with http.get(url, headers=ds_auth) as r:
            body = await r.json()
        assert body["total"] == 130
        assert body["count"] == len(body["response"]) == (100 if start == 0 else 30)
        assert all("members" not in g for g in body["response"])
        seen += [g["id"] for g in body["response"]]
    assert len(set(seen)) == 130
    async with http.get(f"{sb.base_url}/api/2.0/group?count=x", headers=ds_auth) as r:
        assert r.status == 400


async def test_user_groups(sandbox: Sandbox, http, state, ds_auth):
    """A user's groups list every group holding them; an unknown user has none."""
    uid = members(state, groups(state)[0])[0]
    expected = [g for g in groups(state) if uid in members(state, g)]
    async with http.get(f"{sandbox.base_url}/api/2.0/group/user/{uid}", headers=ds_auth) as r:
        body = await r.json()
    assert [g["id"] for g in body["response"]] == expected
    assert body["count"] == len(expected)
    async with http.get(f"{sandbox.base_url}/api/2.0/group/user/{UNKNOWN}", headers=ds_auth) as r:
        assert r.status == 200
        assert (await r.json())["response"] == []


async def sign_in(http: aiohttp.ClientSession, sb: Sandbox) -> str:
    body = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(f"{sb.base_url}/api/2.0/authentication", json=body) as r:
        assert r.status == 201
        answer = await r.json()
    assert answer["statusCode"] == 201
    assert answer["status"] == 0
    expires = datetime.fromisoformat(answer["response"]["expires"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None
    token: str = answer["response"]["token"]
    return token


async def test_personal_token_header_and_cookie(sandbox: Sandbox, http, state):
    """A signed-in token works as the bare Authorization header and as the asc_auth_key cookie."""
    token = await sign_in(http, sandbox)
    url = f"{sandbox.base_url}/api/2.0/group/{groups(state)[0]}"
    async with http.get(url, headers={"Authorization": token}) as r:
        assert r.status == 200
    async with aiohttp.ClientSession(cookies={"asc_auth_key": token}) as jar, jar.get(url) as r:
        assert r.status == 200


async def test_wrong_password_is_401(sandbox: Sandbox, http):
    """Sign-in with a wrong password is 401; a body without fields is 400."""
    url = f"{sandbox.base_url}/api/2.0/authentication"
    async with http.post(url, json={"userName": "admin@example.com", "password": "x"}) as r:
        assert r.status == 401
        assert (await r.json())["statusCode"] == 401
    async with http.post(url, json={"userName": "admin@example.com"}) as r:
        assert r.status == 400


async def test_expired_token_is_401(sandbox: Sandbox, http, state, ds_auth):
    """expire_tokens() ends signed-in tokens; API keys keep working."""
    token = await sign_in(http, sandbox)
    url = f"{sandbox.base_url}/api/2.0/group/{groups(state)[0]}"
    assert sandbox.expire_tokens() == 1
    async with http.get(url, headers={"Authorization": token}) as r:
        assert r.status == 401
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 200


async def test_token_ttl(start_sandbox, http):
    """A token outlives nothing when token_ttl_s is 0."""
    sb = await start_sandbox(config=SandboxConfig(token_ttl_s=0.0))
    token = await sign_in(http, sb)
    async with http.get(f"{sb.base_url}/api/2.0/group", headers={"Authorization": token}) as r:
        assert r.status == 401


async def test_unauthorized_bodies(sandbox: Sandbox, http):
    """No credential, a wrong key or a wrong token all get the same 401 envelope."""
    url = f"{sandbox.base_url}/api/2.0/group"
    expected = {"status": 1, "statusCode": 401, "error": {"message": "Unauthorized"}}
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "nope"}):
        async with http.get(url, headers=headers) as r:
            assert r.status == 401
            assert await r.json() == expected


async def test_missing_scope_is_403(start_sandbox, http):
    """A key without accounts:write may read but not write; without accounts:read not read."""
    state = make_state()
    keys = state["docspace"]["api_keys"]
    keys["sk-read-only"] = ["accounts:read"]
    keys["sk-write-only"] = ["accounts:write"]
    sb = await start_sandbox(state)
    gid = groups(state)[0]
    url = f"{sb.base_url}/api/2.0/group/{gid}"
    reader = {"Authorization": "Bearer sk-read-only"}
    writer = {"Authorization": "Bearer sk-write-only"}
    async with http.get(url, headers=reader) as r:
        assert r.status == 200
    async with http.delete(url + "/members", json={"members": []}, headers=reader) as r:
        assert r.status == 403
        body = await r.json()
    assert body["status"] == 1
    assert body["statusCode"] == 403
    assert "accounts:write" in body["error"]["message"]
    async with http.get(url, headers=writer) as r:
        assert r.status == 403
    async with http.delete(url + "/members", json={"members": []}, headers=writer) as r:
        assert r.status == 200


async def test_ids_are_case_insensitive(sandbox: Sandbox, http, state, ds_auth):
    """Upper-case UUIDs name the same group and users."""
    gid = groups(state)[0]
    first = members(state, gid)[0]
    url = f"{sandbox.base_url}/api/2.0/group/{gid.upper()}/members"
    async with http.delete(url, json={"members": [first.upper()]}, headers=ds_auth) as r:
        assert r.status == 200
    assert first not in sandbox.dump()["docspace"]["groups"][gid]["members"]
    assert str(uuid.UUID(gid)) == gid
