"""DocSpace's JSON shapes of users and groups, as the server's DTOs serialise them.

The server leaves null fields out instead of sending null, and the official SDK's strict
models reject a null where they expect a value: so optional fields are omitted, never None.
"""

from __future__ import annotations

from typing import Any

from bulkgroups.sandbox.docspace_state import EMPTY_GUID, DocSpaceState, DsGroup, DsUser

# EmployeeStatus (ASC.Core.Users): Active = 1, Terminated = 2, Pending = 4.
STATUS = {"user": 1, "guest": 1, "pending": 4, "terminated": 2}
# EmployeeActivationStatus: NotActivated = 0, Activated = 1, Pending = 2.
ACTIVATION = {"user": 1, "guest": 1, "pending": 2, "terminated": 1}
AVATAR = "/static/images/default_user_photo_size_82-82.png"


def user_type(user: DsUser) -> str:
    """EmployeeType by name: guests are typed "Guest"; terminated keep the type they had."""
    return "Guest" if user.kind == "guest" else "User"


def employee_dto(uid: str, user: DsUser, full: bool = False) -> dict[str, Any]:
    dto: dict[str, Any] = {
        "id": uid,
        "displayName": user.name,
        "title": "",
        "avatar": AVATAR,
        "avatarOriginal": AVATAR,
        "avatarMax": AVATAR,
        "avatarMedium": AVATAR,
        "avatarSmall": AVATAR,
        "profileUrl": f"/accounts/view/{uid}",
        "hasAvatar": False,
        "isAnonim": False,
    }
    if full:
        first, _, last = user.name.partition(" ")
        login = user.name.lower().replace(" ", ".") or uid
        dto |= {
            "firstName": first,
            "lastName": last,
            "userName": login,
            "email": f"{login}@example.com",
            "status": STATUS[user.kind],
            "activationStatus": ACTIVATION[user.kind],
            "isAdmin": False,
            "isRoomAdmin": False,
            "isLDAP": False,
            "isOwner": False,
            "isVisitor": user.kind == "guest",
            "isCollaborator": False,
            "isSSO": False,
        }
    return dto


def group_dto(state: DocSpaceState, gid: str, group: DsGroup, members: bool) -> dict[str, Any]:
    """GroupDto: `manager`, `isSystem` and `shared` are null for an ordinary group, so absent."""
    listed = state.listed(group)
    dto: dict[str, Any] = {
        "name": group.name,
        "parent": EMPTY_GUID,
        "category": EMPTY_GUID,
        "id": gid,
        "isLDAP": False,
        "membersCount": len(listed),
    }
    if members:
        users = state.users
        dto["members"] = [employee_dto(uid, users[uid], full=True) for uid in listed]
    return dto


def group_summary_dto(gid: str, group: DsGroup) -> dict[str, Any]:
    """GroupSummaryDto of a user's groups: `manager` (a user name) absent when there is none."""
    return {"id": gid, "name": group.name}
