"""The official DocSpace SDK judges the sandbox: its strict pydantic models must parse every
answer. The SDK is synchronous (urllib3), so each call runs in a thread while the sandbox
serves on the test's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import pytest

from bulkgroups.sandbox import Sandbox

sdk = pytest.importorskip("docspace_api_sdk")
from docspace_api_sdk.api.group.group_api import GroupApi  # noqa: E402
from docspace_api_sdk.api.people.search_api import SearchApi  # noqa: E402
from docspace_api_sdk.exceptions import ApiException  # noqa: E402
from docspace_api_sdk.models.employee_status import EmployeeStatus  # noqa: E402
from docspace_api_sdk.models.employee_type import EmployeeType  # noqa: E402
from docspace_api_sdk.models.members_request import MembersRequest  # noqa: E402
from docspace_api_sdk.models.update_group_request import UpdateGroupRequest  # noqa: E402

T = TypeVar("T")


def client(sb: Sandbox, token: str = "sk-test-key") -> Any:
    config = sdk.Configuration(host=sb.base_url, access_token=token)
    return sdk.ApiClient(config)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def kinds(state: dict[str, Any], kind: str, gid: str) -> list[str]:
    users = state["docspace"]["users"]
    return [u for u in state["docspace"]["groups"][gid]["members"] if users[u]["kind"] == kind]


async def test_group_calls_parse_in_the_sdk(sandbox: Sandbox, state):
    """remove (twice: idempotent), add, update, move-all, get, list and a user's groups all
    answer what the SDK's models accept."""
    api = GroupApi(client(sandbox))
    src, dst = (UUID(g) for g in list(state["docspace"]["groups"])[:2])
    users = kinds(state, "user", str(src))
    gone = [UUID(u) for u in users[:2]]
    for _ in range(2):
        answer = await call(api.remove_members_from, src, MembersRequest(members=gone))
        assert answer.status_code == 200
        assert answer.response is not None
        assert not set(gone) & {m.id for m in answer.response.members or []}
    added = await call(api.add_members_to, dst, MembersRequest(members=gone))
    assert set(gone) <= {m.id for m in added.response.members or []}
    update = UpdateGroupRequest(members_to_add=[], members_to_remove=gone[:1])
    updated = await call(api.update_group, dst, update)
    assert gone[0] not in {m.id for m in updated.response.members or []}
    group = await call(api.get_group, src)
    assert group.response.members_count == len(group.response.members or [])
    assert group.response.category == UUID(int=0)
    listed = await call(api.get_groups, count=100, start_index=0)
    assert {g.id for g in listed.response or []} >= {src, dst}
    theirs = await call(api.get_group_by_user_id, gone[1])
    now = sandbox.dump()["docspace"]["groups"]
    assert [g.id for g in theirs.response or []] == [
        UUID(g) for g, v in now.items() if str(gone[1]) in v["members"]
    ]
    nobody = await call(api.get_group_by_user_id, UUID(int=1))
    assert nobody.response == []
    moved = await call(api.move_members_to, src, dst)
    assert moved.response.id == dst
    left = await call(api.get_group, src)
    assert left.response.members == []  # only hidden terminated members stay


async def test_people_filter_parses_in_the_sdk(sandbox: Sandbox, state):
    """The people filter's full DTOs parse, terminated members of a group included."""
    api = SearchApi(client(sandbox))
    gid = next(iter(state["docspace"]["groups"]))
    found = await call(
        api.search_users_by_extended_filter,
        group_id=UUID(gid),
        employee_status=EmployeeStatus.Terminated,
    )
    assert {str(u.id) for u in found.response or []} == set(kinds(state, "terminated", gid))
    assert all(u.status == EmployeeStatus.Terminated for u in found.response or [])
    guests = await call(api.search_users_by_extended_filter, employee_type=EmployeeType.GUEST)
    assert guests.response
    assert all(u.is_visitor for u in guests.response)


async def test_sdk_sees_404_and_401(sandbox: Sandbox):
    """An unknown group is the SDK's 404; a wrong key its 401."""
    with pytest.raises(ApiException) as missing:
        await call(GroupApi(client(sandbox)).get_group, UUID(int=1))
    assert missing.value.status == 404
    with pytest.raises(ApiException) as refused:
        await call(GroupApi(client(sandbox, "sk-wrong")).get_groups)
    assert refused.value.status == 401
