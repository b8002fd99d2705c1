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


def listed(state: dict[str, Any], gid: str) -> list[str]:
    """The members a group read shows: terminated accounts are hidden."""
    users = state["docspace"]["users"]
    return [u for u in members(state, gid) if users[u]["kind"] != "terminated"]


def of_kind(state: dict[str, Any], gid: str, kind: str) -> list[str]:
    users = state["docspace"]["users"]
    return [u for u in members(state, gid) if users[u]["kind"] == kind]


def non_members(state: dict[str, Any], gid: str, kind: str = "user") -> list[str]:
    inside = set(members(state, gid))
    users = state["docspace"]["users"]
    return [u for u, v in users.items() if v["kind"] == kind and u not in inside]


async def test_read_group_envelope(sandbox: Sandbox, http: aiohttp.ClientSession, state, ds_auth):
    """GET group answers a GroupDto with null fields left out and the listed members only:
    guests are listed, terminated members are not (yet they stay in the group)."""
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
    assert list(dto) == ["name", "parent", "category", "id", "isLDAP", "membersCount", "members"]
    assert dto["id"] == gid
    assert "manager" not in dto
    assert dto["category"] == dto["parent"] == "00000000-0000-0000-0000-000000000000"
    assert dto["isLDAP"] is False
    assert [m["id"] for m in dto["members"]] == listed(state, gid)
    assert dto["membersCount"] == len(listed(state, gid))
    assert of_kind(state, gid, "guest")
    assert set(of_kind(state, gid, "guest")) <= {m["id"] for m in dto["members"]}
    assert of_kind(state, gid, "terminated")
    assert not set(of_kind(state, gid, "terminated")) & {m["id"] for m in dto["members"]}
    names = state["docspace"]["users"]
    assert all(m["displayName"] == names[m["id"]]["name"] for m in dto["members"])
    assert all(None not in m.values() for m in dto["members"])


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
    """DELETE members removes several at once, terminated ones included, and returns the
    group with the rest of its listed members."""
    gid = groups(state)[0]
    hidden = of_kind(state, gid, "terminated")
    gone = [*listed(state, gid)[:3], hidden[0]]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    async with http.delete(url, json={"members": gone}, headers=ds_auth) as r:
        assert r.status == 200
        body = await r.json()
    left = [m["id"] for m in body["response"]["members"]]
    assert left == listed(state, gid)[3:]
    kept = sandbox.dump()["docspace"]["groups"][gid]["members"]
    assert kept == [u for u in members(state, gid) if u not in gone]
    assert hidden[1] in kept


async def test_remove_is_idempotent(sandbox: Sandbox, http, state, ds_auth):
    """Removing again, a non-member, an unknown id, the empty GUID, nothing, or a body without
    `members` changes nothing."""
    gid = groups(state)[0]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    first = members(state, gid)[0]
    async with http.delete(url, json={"members": [first]}, headers=ds_auth) as r:
        assert r.status == 200
    before = sandbox.dump()
    outsider = non_members(state, gid)[0]
    empty = "00000000-0000-0000-0000-000000000000"
    for body in ({"members": [first]}, {"members": [outsider]}, {"members": [UNKNOWN]},
                 {"members": [empty]}, {"members": []}, {}):
        async with http.delete(url, json=body, headers=ds_auth) as r:
            assert r.status == 200, body
            assert (await r.json())["status"] == 0
    assert sandbox.dump() == before


async def test_malformed_body_is_400(sandbox: Sandbox, http, state, ds_auth):
    """A body that is not JSON, a non-list, or one id that is not a GUID fails model binding:
    400 with ValidationProblemDetails in `response`, no error.message, and nothing applied."""
    gid = groups(state)[0]
    before = sandbox.dump()
    valid = listed(state, gid)[0]
    bodies: list[dict[str, Any]] = [
        {"data": b"{nope"},
        {"json": {"members": "abc"}},
        {"json": {"members": [1, 2]}},
        {"json": ["a"]},
        {"json": {"members": [valid, "junk"]}},
        {"json": {"members": [valid, "{" + UNKNOWN + "}"]}},
    ]
    for method in ("DELETE", "PUT"):
        for kwargs in bodies:
            url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
            async with http.request(method, url, headers=ds_auth, **kwargs) as r:
                assert r.status == 400, kwargs
                body = await r.json()
            assert body["status"] == 1
            assert body["statusCode"] == 400
            assert "error" not in body
            assert body["response"]["title"]
            assert all(isinstance(v, list) for v in body["response"]["errors"].values())
    update = {"membersToAdd": [non_members(state, gid)[0]], "membersToRemove": ["junk"]}
    async with http.put(f"{sandbox.base_url}/api/2.0/group/{gid}", json=update,
                        headers=ds_auth) as r:
        assert r.status == 400
        assert "$.membersToRemove[0]" in (await r.json())["response"]["errors"]
    assert sandbox.dump() == before


async def test_add_with_empty_body_is_500(sandbox: Sandbox, http, state, ds_auth):
    """PUT members with `{}` dereferences the missing list on the server: 500."""
    url = f"{sandbox.base_url}/api/2.0/group/{groups(state)[0]}/members"
    async with http.put(url, json={}, headers=ds_auth) as r:
        assert r.status == 500
        assert (await r.json())["statusCode"] == 500


async def test_move_all_quirk(start_sandbox, http, ds_auth):
    """Move-all walks the listed members: users join the destination and leave the source;
    guests leave without joining; terminated members are not listed, so they stay."""
    state = make_state(guests=2, terminated=2)
    src, dst = list(state["docspace"]["groups"])[:2]
    sb = await start_sandbox(state)
    url = f"{sb.base_url}/api/2.0/group/{src}/members/{dst}"
    async with http.put(url, headers=ds_auth) as r:
        assert r.status == 200
        body = await r.json()
    assert body["response"]["id"] == dst
    after = sb.dump()["docspace"]["groups"]
    assert after[src]["members"] == of_kind(state, src, "terminated")
    assert len(after[src]["members"]) == 2
    users = of_kind(state, src, "user")
    assert set(after[dst]["members"]) == set(members(state, dst)) | set(users)
    assert not set(of_kind(state, src, "guest")) & set(after[dst]["members"])


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
    """PUT members adds users; guests, terminated, unknown ids and the empty GUID are skipped."""
    state = make_state(guests=1, terminated=1)
    gid = list(state["docspace"]["groups"])[1]
    sb = await start_sandbox(state)
    user = non_members(state, gid)[0]
    guest = non_members(state, gid, "guest")[0]
    gone = non_members(state, gid, "terminated")[0]
    ids = [user.upper(), guest, gone, UNKNOWN, "00000000-0000-0000-0000-000000000000"]
    async with http.put(
        f"{sb.base_url}/api/2.0/group/{gid}/members", json={"members": ids}, headers=ds_auth
    ) as r:
        assert r.status == 200
        got = [m["id"] for m in (await r.json())["response"]["members"]]
    assert got == [*members(state, gid), user]
    assert sb.dump()["docspace"]["groups"][gid]["members"] == got


async def test_update_skips_guests_and_terminated(start_sandbox, http, ds_auth):
    """membersToAdd skips guests and terminated accounts as PUT members does."""
    state = make_state()
    gid = list(state["docspace"]["groups"])[1]
    sb = await start_sandbox(state)
    odd = [*non_members(state, gid, "guest"), *non_members(state, gid, "terminated")]
    async with http.put(f"{sb.base_url}/api/2.0/group/{gid}", json={"membersToAdd": odd},
                        headers=ds_auth) as r:
        assert r.status == 200
    assert sb.dump()["docspace"]["groups"][gid]["members"] == members(state, gid)


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
    """POST members replaces the listed members; 400 when none of the ids is valid."""
    gid = groups(state)[0]
    url = f"{sandbox.base_url}/api/2.0/group/{gid}/members"
    async with http.post(url, json={"members": [UNKNOWN]}, headers=ds_auth) as r:
        assert r.status == 400
    new = non_members(state, gid)[:2]
    async with http.post(url, json={"members": [*new, UNKNOWN]}, headers=ds_auth) as r:
        assert r.status == 200
    kept = sandbox.dump()["docspace"]["groups"][gid]["members"]
    assert kept == [*of_kind(state, gid, "terminated"), *new]


async def test_list_paging_and_total(start_sandbox, http, ds_auth):
    """The group list pages at most 100, reports the total and carries no members."""
    sb = await start_sandbox(make_state(docspace_groups=130, docspace_members=2))
    seen: list[str] = []
    for start in (0, 100):
        url = f"{sb.base_url}/api/2.0/group?count=100&startIndex={start}"
        async with http.get(url, headers=ds_auth) as r:
            body = await r.json()
        assert body["total"] == 130
        assert body["count"] == len(body["response"]) == (100 if start == 0 else 30)
        assert all("members" not in g for g in body["response"])
        seen += [g["id"] for g in body["response"]]
    assert len(set(seen)) == 130
    for bad in ("x", "0", "101", "-1"):
        async with http.get(f"{sb.base_url}/api/2.0/group?count={bad}", headers=ds_auth) as r:
            assert r.status == 400, bad
            body = await r.json()
        assert body["statusCode"] == 400
        assert body["response"]["errors"]


async def test_user_groups(sandbox: Sandbox, http, state, ds_auth):
    """A user's groups list every group holding them; an unknown user has none."""
    uid = members(state, groups(state)[0])[0]
    expected = [g for g in groups(state) if uid in members(state, g)]
    async with http.get(f"{sandbox.base_url}/api/2.0/group/user/{uid}", headers=ds_auth) as r:
        body = await r.json()
    assert [g["id"] for g in body["response"]] == expected
    assert all(set(g) == {"id", "name"} for g in body["response"])
    assert body["count"] == len(expected)
    hidden = of_kind(state, groups(state)[0], "terminated")[0]
    url = f"{sandbox.base_url}/api/2.0/group/user/{hidden}"
    async with http.get(url, headers=ds_auth) as r:
        assert [g["id"] for g in (await r.json())["response"]] == [groups(state)[0]]
    async with http.get(f"{sandbox.base_url}/api/2.0/group/user/{UNKNOWN}", headers=ds_auth) as r:
        assert r.status == 200
        assert (await r.json())["response"] == []


async def sign_in(http: aiohttp.ClientSession, sb: Sandbox) -> str:
    body = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(f"{sb.base_url}/api/2.0/authentication", json=body) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer["statusCode"] == 200
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
    """No credential, a wrong key, a wrong token, a bare `sk-` key or a lower-case `bearer`:
    401 with an empty body (the auth layer's own answer)."""
    url = f"{sandbox.base_url}/api/2.0/group"
    for headers in (
        {},
        {"Authorization": "Bearer sk-wrong"},
        {"Authorization": "nope"},
        {"Authorization": "sk-test-key"},
        {"Authorization": "bearer sk-test-key"},
        {"Authorization": "BEARER sk-test-key"},
    ):
        async with http.get(url, headers=headers) as r:
            assert r.status == 401, headers
            assert await r.read() == b""


async def test_cookie_wins_over_header_for_a_token(sandbox: Sandbox, http, state):
    """For a non-`sk-` token the asc_auth_key cookie is read instead of the header: a stale
    cookie fails a good header; an API key in the header ignores the cookie."""
    token = await sign_in(http, sandbox)
    url = f"{sandbox.base_url}/api/2.0/group/{groups(state)[0]}"
    async with aiohttp.ClientSession(cookies={"asc_auth_key": "stale"}) as jar:
        async with jar.get(url, headers={"Authorization": token}) as r:
            assert r.status == 401
        async with jar.get(url, headers={"Authorization": "Bearer " + token}) as r:
            assert r.status == 401
        async with jar.get(url, headers={"Authorization": "Bearer sk-test-key"}) as r:
            assert r.status == 200
    async with http.get(url, headers={"Authorization": "Bearer " + token}) as r:
        assert r.status == 200


async def test_two_factor_account_gets_no_token(start_sandbox, http):
    """An account with two-factor sign-in: 200 with tfa/sms flags and no token."""
    state = make_state()
    state["docspace"]["tfa"] = ["admin@example.com"]
    sb = await start_sandbox(state)
    body = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(f"{sb.base_url}/api/2.0/authentication", json=body) as r:
        assert r.status == 200
        answer = (await r.json())["response"]
    assert answer["tfa"] is True
    assert answer["sms"] is False
    assert "token" not in answer
    assert sb.issued_tokens()["docspace"] == []


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
        assert await r.read() == b""
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
