"""The Adaxes emulator over real HTTP: URL-encoded DNs, GUIDs, SIDs, operation results, sign-in."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

import aiohttp
import pytest
import yarl

from bulkgroups.sandbox import Sandbox, SandboxConfig, make_state
from bulkgroups.sandbox.seed import AWKWARD_NAMES, NESTED_GROUP_DN

MEMBERS = "/api/directoryObjects/groupMembers"
UNAUTHENTICATED = {
    "message": "The provided authentication token is either expired or invalid.",
    "code": "unauthenticated",
}


def ax_groups(state: dict[str, Any]) -> list[str]:
    return [dn for dn, o in state["adaxes"]["objects"].items() if o["type"] == "group"]


def ax_members(state: dict[str, Any], group: str) -> list[str]:
    return list(state["adaxes"]["objects"][group]["members"])


def outsiders(state: dict[str, Any], group: str) -> list[str]:
    inside = set(ax_members(state, group))
    objects = state["adaxes"]["objects"]
    return [dn for dn, o in objects.items() if o["type"] == "user" and dn not in inside]


async def listed(
    http: aiohttp.ClientSession, sb: Sandbox, group: str, auth: dict[str, str]
) -> list[str]:
    async with http.get(sb.adaxes_url + MEMBERS, params={"group": group}, headers=auth) as r:
        assert r.status == 200
        return [m["dn"] for m in await r.json()]


async def remove(http, sb, group: str, member: str, auth, **kw: Any) -> tuple[int, Any]:
    url = sb.adaxes_url + MEMBERS
    async with http.delete(url, params={"group": group, "member": member}, headers=auth, **kw) as r:
        return r.status, await r.json()


async def add(http, sb, group: str, member: str, auth, **kw: Any) -> tuple[int, Any]:
    body = {"group": group, "newMember": member}
    async with http.post(sb.adaxes_url + MEMBERS, json=body, headers=auth, **kw) as r:
        return r.status, await r.json()


def test_seeded_dns_are_awkward(state):
    """The seeded state holds DNs with commas, spaces, +, #, = and non-ASCII letters."""
    group = ax_groups(state)[0]
    dns = ax_members(state, group)[: len(AWKWARD_NAMES)]
    text = "".join(dn.split(",OU=")[0] for dn in dns)
    for needle in ("\\,", " ", "\\+", "#", "\\=", "ë", "Ż"):
        assert needle in text, needle


async def test_remove_awkward_dns(sandbox: Sandbox, http, state, ax_auth):
    """Every awkward DN is removed by its URL-encoded DN, then absent from the list."""
    group = ax_groups(state)[0]
    awkward = ax_members(state, group)[: len(AWKWARD_NAMES)]
    for dn in awkward:
        status, result = await remove(http, sandbox, group, dn, ax_auth)
        assert status == 200, dn
        assert result["resultType"] == 0, dn
        assert result["exception"] is None, dn
        assert result["actualObjectDN"] == group
    left = await listed(http, sandbox, group, ax_auth)
    assert not set(awkward) & set(left)
    assert left == ax_members(state, group)[len(AWKWARD_NAMES) :]


async def test_percent_encoded_query(sandbox: Sandbox, http, state, ax_auth):
    """A query encoded with quote(safe='') (%2C, %2B, %23, %26, UTF-8) reaches the same objects."""
    group = ax_groups(state)[1]  # "R&D, Europe": & and a comma in the group's own name
    awkward = ax_members(state, ax_groups(state)[0])[: len(AWKWARD_NAMES)]
    for dn in awkward:
        if dn not in ax_members(state, group):
            status, result = await add(http, sandbox, group, dn, ax_auth)
            assert (status, result["resultType"]) == (200, 0), dn
    q = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    for dn in awkward:
        raw = f"{sandbox.adaxes_url}{MEMBERS}?group={q(group)}&member={q(dn)}"
        async with http.delete(yarl.URL(raw, encoded=True), headers=ax_auth) as r:
            assert (r.status, (await r.json())["resultType"]) == (200, 0), dn
        assert sandbox.log[-1].query == raw.split("?", 1)[1]
    queries = "".join(e.query for e in sandbox.log)
    for encoded in ("%2C", "%2B", "%23", "%26", "%3D", "%C3%AB"):
        assert encoded in queries, encoded
    assert not set(awkward) & set(await listed(http, sandbox, group, ax_auth))


async def test_unencoded_plus_is_a_space(sandbox: Sandbox, http, state, ax_auth):
    """A raw '+' in a query means a space, so an unencoded DN with '+' is not found."""
    plus = next(dn for dn in ax_members(state, ax_groups(state)[0]) if "\\+" in dn)
    group = urllib.parse.quote(ax_groups(state)[0], safe="")
    raw = f"{sandbox.adaxes_url}{MEMBERS}?group={group}&member={plus}"
    async with http.delete(yarl.URL(raw.replace("#", "%23"), encoded=True), headers=ax_auth) as r:
        assert r.status == 404


async def test_by_guid_and_sid(sandbox: Sandbox, http, state, ax_auth):
    """Groups and members are also named by GUID (any case, braces too) or by SID."""
    objects = state["adaxes"]["objects"]
    group = ax_groups(state)[2]
    gone_a, gone_b = ax_members(state, group)[:2]
    g = objects[group]
    status, result = await remove(http, sandbox, g["guid"].upper(), objects[gone_a]["sid"], ax_auth)
    assert status == 200
    assert result["resultType"] == 0
    status, result = await remove(
        http, sandbox, g["sid"], "{" + objects[gone_b]["guid"] + "}", ax_auth
    )
    assert status == 200
    assert result["resultType"] == 0
    newcomer = outsiders(state, group)[0]
    status, result = await add(http, sandbox, g["guid"], objects[newcomer]["guid"], ax_auth)
    assert status == 200
    assert result["resultType"] == 0
    after = sandbox.dump()["adaxes"]["objects"][group]["members"]
    assert gone_a not in after
    assert gone_b not in after
    assert newcomer in after


async def test_dn_is_case_insensitive(sandbox: Sandbox, http, state, ax_auth):
    """A DN in another case names the same object; the state keeps the canonical DN."""
    group = ax_groups(state)[0]
    member = ax_members(state, group)[1]
    status, result = await remove(http, sandbox, group.upper(), member.lower(), ax_auth)
    assert status == 200
    assert result["resultType"] == 0
    status, result = await add(http, sandbox, group.lower(), member.upper(), ax_auth)
    assert status == 200
    assert result["resultType"] == 0
    assert member in sandbox.dump()["adaxes"]["objects"][group]["members"]


async def test_list_members_shape_and_size_limit(sandbox: Sandbox, http, state, ax_auth):
    """The member list holds the default property set; sizeLimit caps it."""
    group = ax_groups(state)[0]
    params = {"group": group, "sizeLimit": "3"}
    async with http.get(sandbox.adaxes_url + MEMBERS, params=params, headers=ax_auth) as r:
        assert r.status == 200
        got = await r.json()
    assert len(got) == 3
    first = got[0]
    keys = [
        "guid",
        "dn",
        "displayName",
        "objectType",
        "objectTypeCode",
        "domainName",
        "directoryType",
    ]
    assert list(first) == keys
    assert first["dn"] == ax_members(state, group)[0]
    assert first["displayName"] == AWKWARD_NAMES[0]
    assert first["objectType"] == "user"
    assert first["objectTypeCode"] == 2
    assert first["domainName"] == "example.com"
    assert first["directoryType"] == 1


async def test_existing_member_and_non_member(sandbox: Sandbox, http, state, ax_auth):
    """Adding a member or removing a non-member answers 200 with resultType 1 and a reason."""
    group = ax_groups(state)[0]
    member = ax_members(state, group)[0]
    outsider = outsiders(state, group)[0]
    status, result = await add(http, sandbox, group, member, ax_auth)
    assert status == 200
    assert result["resultType"] == 1
    assert (
        result["exception"]["message"]
        == "The specified account name is already a member of the group."
    )
    status, result = await remove(http, sandbox, group, outsider, ax_auth)
    assert status == 200
    assert result["resultType"] == 1
    assert (
        result["exception"]["message"] == "The specified account name is not a member of the group."
    )
    assert sandbox.dump()["adaxes"] == state["adaxes"]


async def test_no_changes_flag(start_sandbox, http, ax_auth):
    """With adaxes_no_changes_flag the no-op changes answer resultType 0 and noChanges."""
    state = make_state()
    sb = await start_sandbox(state, SandboxConfig(adaxes_no_changes_flag=True))
    group = ax_groups(state)[0]
    status, result = await add(http, sb, group, ax_members(state, group)[0], ax_auth)
    assert (status, result["resultType"], result["extraInfo"]) == (200, 0, {"noChanges": True})
    status, result = await remove(http, sb, group, outsiders(state, group)[0], ax_auth)
    assert (status, result["resultType"], result["extraInfo"]) == (200, 0, {"noChanges": True})


async def test_approval_and_denied(start_sandbox, http, ax_auth):
    """An approval group suspends the change (resultType 2); a denied group fails it (1)."""
    state = make_state()
    pending, denied = ax_groups(state)[:2]
    state["adaxes"]["objects"][pending]["approval"] = True
    state["adaxes"]["objects"][denied]["denied"] = True
    sb = await start_sandbox(state)
    status, result = await remove(http, sb, pending, ax_members(state, pending)[0], ax_auth)
    assert status == 200
    assert result["resultType"] == 2
    assert result["exception"] is None
    assert [m["messageType"] for m in result["innerMessages"]] == [4]
    status, result = await add(http, sb, denied, outsiders(state, denied)[0], ax_auth)
    assert status == 200
    assert result["resultType"] == 1
    assert result["exception"] == {"message": "Access is denied."}
    assert sb.dump()["adaxes"] == state["adaxes"]


async def test_not_found_and_bad_request(sandbox: Sandbox, http, state, ax_auth):
    """Unknown objects are 404 notFound; missing parameters or a bad body are 400 modelState."""
    group = ax_groups(state)[0]
    for g, m in (
        ("CN=Nobody,DC=example,DC=com", ax_members(state, group)[0]),
        (group, "S-1-5-21-9"),
    ):
        status, body = await remove(http, sandbox, g, m, ax_auth)
        assert status == 404
        assert body["code"] == "notFound"
        assert body["message"]
    async with http.delete(
        sandbox.adaxes_url + MEMBERS, params={"group": group}, headers=ax_auth
    ) as r:
        assert r.status == 400
        body = await r.json()
    assert "member" in body["modelState"]
    assert body["message"]
    async with http.post(sandbox.adaxes_url + MEMBERS, json={"group": group}, headers=ax_auth) as r:
        assert r.status == 400
        assert "newMember" in (await r.json())["modelState"]
    async with http.post(sandbox.adaxes_url + MEMBERS, data=b"{", headers=ax_auth) as r:
        assert r.status == 400
        assert "modelState" in await r.json()


async def test_async_operation(start_sandbox, http, ax_auth):
    """With Adm-Wait shorter than the operation: 202 with an id, applied later, polled to done."""
    state = make_state()
    sb = await start_sandbox(state, SandboxConfig(adaxes_operation_s=0.2))
    group = ax_groups(state)[0]
    member = ax_members(state, group)[0]
    status, body = await remove(http, sb, group, member, {**ax_auth, "Adm-Wait": "0"})
    assert status == 202
    assert set(body) == {"id"}
    assert member in sb.dump()["adaxes"]["objects"][group]["members"]
    url = f"{sb.adaxes_url}/api/runningOperations/{body['id']}"
    async with http.get(url, headers=ax_auth) as r:
        first = await r.json()
    assert first == {"completed": False, "operationResult": None}
    deadline = time.monotonic() + 5
    while True:
        async with http.get(url, headers=ax_auth) as r:
            polled = await r.json()
        if polled["completed"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert polled["completed"]
    assert polled["operationResult"]["resultType"] == 0
    assert member not in sb.dump()["adaxes"]["objects"][group]["members"]
    async with http.get(f"{sb.adaxes_url}/api/runningOperations/nope", headers=ax_auth) as r:
        assert r.status == 404


async def test_operation_within_wait_is_synchronous(start_sandbox, http, ax_auth):
    """With Adm-Wait longer than the operation, or none, the answer is 200 after the operation."""
    state = make_state()
    sb = await start_sandbox(state, SandboxConfig(adaxes_operation_s=0.1))
    group = ax_groups(state)[0]
    a, b = ax_members(state, group)[:2]
    status, result = await remove(http, sb, group, a, {**ax_auth, "Adm-Wait": "5"})
    assert status == 200
    assert result["resultType"] == 0
    status, result = await remove(http, sb, group, b, ax_auth)
    assert status == 200
    assert result["resultType"] == 0
    assert all(e.end - e.start >= 0.09 for e in sb.log[-2:])


async def legacy_sign_in(http: aiohttp.ClientSession, sb: Sandbox) -> tuple[str, str]:
    body = {"username": "EXAMPLE\\admin", "password": "test-password"}
    async with http.post(sb.adaxes_url + "/api/authSessions/create", json=body) as r:
        assert r.status == 200
        session = await r.json()
    assert set(session) == {"sessionId", "totpState", "changePasswordReason", "expiresAtUtc"}
    async with http.post(
        sb.adaxes_url + "/api/auth", json={"sessionId": session["sessionId"]}
    ) as r:
        assert r.status == 200
        token = await r.json()
    assert set(token) == {"token", "expiresAtUtc"}
    return session["sessionId"], token["token"]


async def test_legacy_sign_in_renew_and_sign_out(sandbox: Sandbox, http, state):
    """Session, token, renewal and sign-out all work; a signed-out token is 401."""
    session, token = await legacy_sign_in(http, sandbox)
    group = ax_groups(state)[0]
    assert await listed(http, sandbox, group, {"Adm-Authorization": token})
    async with http.patch(sandbox.adaxes_url + "/api/auth", json={"token": token}) as r:
        assert r.status == 200
        renewed = await r.json()
    assert renewed["token"] == token
    assert renewed["expiresAtUtc"]
    async with http.delete(sandbox.adaxes_url + "/api/auth", params={"token": token}) as r:
        assert r.status == 204
    async with http.get(
        sandbox.adaxes_url + MEMBERS, params={"group": group}, headers={"Adm-Authorization": token}
    ) as r:
        assert r.status == 401
        assert await r.json() == UNAUTHENTICATED
    async with http.delete(sandbox.adaxes_url + "/api/authSessions", params={"id": session}) as r:
        assert r.status == 204
    async with http.post(sandbox.adaxes_url + "/api/auth", json={"sessionId": session}) as r:
        assert r.status == 401


async def test_wrong_credentials_are_403(sandbox: Sandbox, http):
    """Wrong sign-in credentials are 403 with innerError and a falling attemptsLeft."""
    body = {"username": "EXAMPLE\\admin", "password": "wrong"}
    left = []
    for _ in range(2):
        async with http.post(sandbox.adaxes_url + "/api/authSessions/create", json=body) as r:
            assert r.status == 403
            answer = await r.json()
        assert answer["message"]
        assert answer["code"]
        assert set(answer["innerError"]) == {"message", "code", "attemptsLeft"}
        left.append(answer["innerError"]["attemptsLeft"])
    assert left[0] > left[1]


async def test_token_expiry(sandbox: Sandbox, http, state, ax_auth):
    """expire_tokens() ends signed-in tokens (documented 401) and renewal; long-lived ones stay."""
    session, token = await legacy_sign_in(http, sandbox)
    group = ax_groups(state)[0]
    sandbox.expire_tokens()
    params = {"group": group}
    async with http.get(
        sandbox.adaxes_url + MEMBERS, params=params, headers={"Adm-Authorization": token}
    ) as r:
        assert r.status == 401
        assert await r.json() == UNAUTHENTICATED
    async with http.patch(sandbox.adaxes_url + "/api/auth", json={"token": token}) as r:
        assert r.status == 401
    assert await listed(http, sandbox, group, ax_auth)
    async with http.post(sandbox.adaxes_url + "/api/auth", json={"sessionId": session}) as r:
        assert r.status == 200  # the session outlives its tokens unless expired too
    sandbox.expire_tokens(sessions=True)
    async with http.post(sandbox.adaxes_url + "/api/auth", json={"sessionId": session}) as r:
        assert r.status == 401


async def test_short_token_ttl(start_sandbox, http):
    """A token issued with token_ttl_s=0 is already expired."""
    state = make_state()
    sb = await start_sandbox(state, SandboxConfig(token_ttl_s=0.0))
    _, token = await legacy_sign_in(http, sb)
    params = {"group": ax_groups(state)[0]}
    async with http.get(
        sb.adaxes_url + MEMBERS, params=params, headers={"Adm-Authorization": token}
    ) as r:
        assert r.status == 401


@pytest.mark.parametrize(
    "headers", [{}, {"Adm-Authorization": "wrong"}, {"Authorization": "Bearer sk-test-key"}]
)
async def test_unauthenticated_body(sandbox: Sandbox, http, state, headers):
    """A missing or wrong token gets exactly the documented 401 body."""
    params = {"group": ax_groups(state)[0]}
    async with http.get(sandbox.adaxes_url + MEMBERS, params=params, headers=headers) as r:
        assert r.status == 401
        assert await r.json() == UNAUTHENTICATED


async def test_any_dn_spelling_names_the_same_object(sandbox: Sandbox, http, state, ax_auth):
    """Spaces after commas and around '=', \\2C-style hex escapes (UTF-8), another case or
    a decomposed accent name the same group and member; the state keeps its own spelling."""
    group = ax_groups(state)[0]  # CN=Sales,OU=Groups,DC=example,DC=com
    lee, zoe = ax_members(state, group)[:2]  # "Lee, Ann" and "Zoë Müller"
    assert (lee, zoe) == (
        "CN=Lee\\, Ann,OU=Users,DC=example,DC=com",
        "CN=Zoë Müller,OU=Users,DC=example,DC=com",
    )
    spelled_group = "cn = Sales, OU=Groups , dc=EXAMPLE, DC=com"
    for spelled in (
        "CN=Lee\\2C Ann, OU=Users, DC=example, DC=com",
        "cn=ZO\\C3\\8B m\\C3\\BCLLER,ou=users,dc=example,dc=com",
    ):
        status, result = await remove(http, sandbox, spelled_group, spelled, ax_auth)
        assert (status, result["resultType"]) == (200, 0), spelled
    assert not {lee, zoe} & set(await listed(http, sandbox, group, ax_auth))
    decomposed = "CN=Zoe\u0308 Mu\u0308ller,OU=Users,DC=example,DC=com"
    status, result = await add(http, sandbox, group.lower(), decomposed, ax_auth)
    assert (status, result["resultType"], result["actualObjectDN"]) == (200, 0, group)
    status, result = await add(http, sandbox, group, zoe, ax_auth)
    assert (status, result["resultType"]) == (200, 1)  # already a member, by any spelling
    members = sandbox.dump()["adaxes"]["objects"][group]["members"]
    assert zoe in members
    assert lee not in members


async def test_dn_spelling_that_means_another_object_is_not_found(
    sandbox: Sandbox, http, state, ax_auth
):
    """An unescaped comma is a separator, not data; a malformed DN is 404, not a crash."""
    group = ax_groups(state)[0]
    for other in (
        "CN=Lee, CN=Ann,OU=Users,DC=example,DC=com",
        "CN=Lee\\, Ann,OU=Users,DC=example",
        "CN=Lee\\",
        "CN=\\C3,OU=Users,DC=example,DC=com",
        "CN=Lee,,DC=example,DC=com",
    ):
        status, result = await remove(http, sandbox, group, other, ax_auth)
        assert (status, result["code"]) == (404, "notFound"), other
    assert sandbox.dump() == state


async def test_list_members_with_properties(sandbox: Sandbox, http, state, ax_auth):
    """properties=objectSid adds each member's SID (names in any case, comma-separated,
    with spaces); unknown names are ignored; without it the default set only."""
    group = ax_groups(state)[0]
    objects = state["adaxes"]["objects"]
    url = sandbox.adaxes_url + MEMBERS
    default = [
        "guid",
        "dn",
        "displayName",
        "objectType",
        "objectTypeCode",
        "domainName",
        "directoryType",
    ]
    for props in ("objectSid", "mail, OBJECTSID ,noSuchThing", "objectsid,objectSid"):
        params = {"group": group, "properties": props}
        async with http.get(url, params=params, headers=ax_auth) as r:
            assert r.status == 200
            got = await r.json()
        assert [m["dn"] for m in got] == ax_members(state, group), props
        assert all(list(m) == [*default, "properties"] for m in got), props
        # Adaxes answers every property as an array of values
        assert [m["properties"] for m in got] == [
            {"objectSid": [objects[m["dn"]]["sid"]]} for m in got
        ]
    for props in ("mail,noSuchThing", ""):
        params = {"group": group, "properties": props, "sizeLimit": "2"}
        async with http.get(url, params=params, headers=ax_auth) as r:
            got = await r.json()
        assert [list(m) for m in got] == [default] * 2, props
    params = {"group": group, "properties": "objectSid", "includeIndirect": "true"}
    async with http.get(url, params=params, headers=ax_auth) as r:
        got = await r.json()
    assert len(got) == len(ax_members(state, group))
    assert all(m["properties"]["objectSid"] == [objects[m["dn"]]["sid"]] for m in got)


async def test_disabled_accounts_and_uac(sandbox: Sandbox, http, state, ax_auth):
    """accountDisabled and userAccountControl (512, plus 2 when disabled) come as arrays."""
    objects = state["adaxes"]["objects"]
    group = next(dn for dn, o in objects.items() if o["type"] == "group")
    params = {"group": group, "properties": "accountDisabled,userAccountControl"}
    async with http.get(sandbox.adaxes_url + MEMBERS, params=params, headers=ax_auth) as r:
        got = await r.json()
    off = [m["dn"] for m in got if m["properties"]["accountDisabled"] == [True]]
    assert off == [dn for dn in objects[group]["members"] if objects[dn].get("disabled")]
    assert len(off) == 2
    for m in got:
        disabled = objects[m["dn"]].get("disabled", False)
        assert m["properties"]["userAccountControl"] == [514 if disabled else 512]


async def test_include_indirect_walks_the_nested_group(start_sandbox, http, ax_auth):
    """make_state(nested=True): the nested group is a direct member of the second group; its
    users are listed only with includeIndirect=true; a group has no accountDisabled property."""
    state = make_state(nested=True)
    sandbox = await start_sandbox(state)
    objects = state["adaxes"]["objects"]
    second = [dn for dn, o in objects.items() if o["type"] == "group"][1]
    base = {"group": second, "properties": "accountDisabled"}
    async with http.get(sandbox.adaxes_url + MEMBERS, params=base, headers=ax_auth) as r:
        direct = await r.json()
    assert NESTED_GROUP_DN in [m["dn"] for m in direct]
    nested = next(m for m in direct if m["dn"] == NESTED_GROUP_DN)
    assert nested["objectType"] == "group"
    assert nested["properties"] == {}
    params = {**base, "includeIndirect": "true"}
    async with http.get(sandbox.adaxes_url + MEMBERS, params=params, headers=ax_auth) as r:
        every = [m["dn"] for m in await r.json()]
    assert set(every) == {m["dn"] for m in direct} | set(objects[NESTED_GROUP_DN]["members"])


async def test_default_size_limit_of_older_versions(start_sandbox, http, ax_auth):
    """adaxes_default_size_limit caps a list without sizeLimit; sizeLimit overrides it; off by
    default (every member)."""
    state = make_state(adaxes_groups=1, adaxes_members=30)
    group = next(dn for dn, o in state["adaxes"]["objects"].items() if o["type"] == "group")
    plain = await start_sandbox(state)
    capped = await start_sandbox(state, SandboxConfig(adaxes_default_size_limit=10))
    for sb, params, n in (
        (plain, {"group": group}, 30),
        (capped, {"group": group}, 10),
        (capped, {"group": group, "sizeLimit": "25"}, 25),
    ):
        async with http.get(sb.adaxes_url + MEMBERS, params=params, headers=ax_auth) as r:
            assert len(await r.json()) == n, params
