"""DocSpace's part of the state: API keys, accounts, users and groups, with their changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

# "user" and "pending" are listed members; "guest" is a user type (listed, never added);
# "terminated" is a status: hidden from member lists, never added, yet removable.
USER_KINDS = frozenset({"user", "pending", "guest", "terminated"})
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"


class StateError(ValueError):
    """The state given to the sandbox is not valid."""


def norm_id(value: object) -> str | None:
    """Canonical (lower-case, hyphenated) UUID text, or None if `value` is not a UUID."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass(slots=True)
class DsUser:
    name: str
    kind: str


@dataclass(slots=True)
class DsGroup:
    name: str
    members: dict[str, None]  # an ordered set of user ids


class DocSpaceState:
    def __init__(self, data: dict[str, Any]) -> None:
        self.api_keys: dict[str, frozenset[str]] = {}
        for key, scopes in dict(data.get("api_keys", {})).items():
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise StateError(f"docspace.api_keys[{key!r}] must be a list of scopes")
            self.api_keys[str(key)] = frozenset(scopes)
        self.accounts: dict[str, str] = {
            str(k): str(v) for k, v in dict(data.get("accounts", {})).items()
        }
        tfa = data.get("tfa", [])
        if not isinstance(tfa, list) or not all(isinstance(a, str) for a in tfa):
            raise StateError("docspace.tfa must be a list of account names")
        # Accounts that sign in with a second factor: the first step gives no token.
        self.tfa: list[str] = list(tfa)
        self.users: dict[str, DsUser] = {}
        for raw_id, user in dict(data.get("users", {})).items():
            uid = _must_id(raw_id, "user")
            if not isinstance(user, dict):
                raise StateError(f"docspace user {raw_id} must be an object")
            kind = user.get("kind", "user")
            if kind not in USER_KINDS:
                raise StateError(
                    f"docspace user {raw_id}: kind must be one of {sorted(USER_KINDS)}"
                )
            self.users[uid] = DsUser(str(user.get("name", "")), kind)
        self.groups: dict[str, DsGroup] = {}
        for raw_id, group in dict(data.get("groups", {})).items():
            gid = _must_id(raw_id, "group")
            if not isinstance(group, dict) or not isinstance(group.get("members", []), list):
                raise StateError(f"docspace group {raw_id} must be an object with a members list")
            members = {
                _must_id(m, f"member of group {raw_id}"): None for m in group.get("members", [])
            }
            self.groups[gid] = DsGroup(str(group.get("name", "")), members)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "api_keys": {k: sorted(v) for k, v in self.api_keys.items()},
            "accounts": dict(self.accounts),
            "users": {uid: {"name": u.name, "kind": u.kind} for uid, u in self.users.items()},
            "groups": {
                gid: {"name": g.name, "members": list(g.members)} for gid, g in self.groups.items()
            },
        }
        if self.tfa:
            out["tfa"] = list(self.tfa)
        return out

    def display_name(self, uid: str) -> str:
        user = self.users.get(uid)
        return user.name if user is not None else ""

    def addable(self, raw: str) -> str | None:
        """The canonical id of a user an add takes (known, not a guest, not terminated)."""
        uid = norm_id(raw)
        user = self.users.get(uid) if uid is not None else None
        return uid if user is not None and user.kind in ("user", "pending") else None

    def any_addable(self, ids: list[str]) -> bool:
        return any(self.addable(raw) is not None for raw in ids)

    def listed(self, group: DsGroup) -> list[str]:
        """The members a group read shows: every account but the terminated ones."""
        users = self.users
        return [
            uid for uid in group.members if uid in users and users[uid].kind != "terminated"
        ]

    def add(self, group: DsGroup, ids: list[str]) -> None:
        """Skips silently what the server skips: no account, empty GUID, guests, terminated."""
        for raw in ids:
            uid = self.addable(raw)
            if uid is not None:
                group.members[uid] = None

    def remove(self, group: DsGroup, ids: list[str]) -> None:
        """Removes any existing account, terminated included; other ids are skipped."""
        for raw in ids:
            uid = norm_id(raw)
            if uid is not None and uid in self.users:
                group.members.pop(uid, None)

    def move_all(self, source: DsGroup, dest: DsGroup) -> None:
        """The server walks the *listed* members: each is added (guests are skipped by the
        add), then removed; terminated members are not listed, so they stay in the source."""
        for uid in self.listed(source):
            if self.addable(uid) is not None:
                dest.members[uid] = None
            source.members.pop(uid, None)

    def groups_of(self, uid: str) -> list[tuple[str, DsGroup]]:
        """Every group holding the account, terminated or not (the server reads the links)."""
        return [(gid, g) for gid, g in self.groups.items() if uid in g.members]


def _must_id(value: object, what: str) -> str:
    uid = norm_id(value)
    if uid is None:
        raise StateError(f"docspace {what} id {value!r} is not a UUID")
    return uid
