"""Adaxes's part of the state: tokens, accounts and directory objects keyed by DN."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bulkgroups.sandbox.dn import display_name, domain_name, normalize_dn
from bulkgroups.sandbox.docspace_state import StateError

_KNOWN_KEYS = frozenset({"type", "guid", "sid", "members", "approval", "denied", "disabled"})
_TYPE_CODES = {"user": 2, "group": 3}


@dataclass(slots=True)
class AdObject:
    dn: str  # canonical spelling, as in the state
    type: str  # "user" | "group"
    guid: str
    sid: str
    members: dict[str, None] = field(default_factory=dict)  # canonical DNs, ordered
    approval: bool = False
    denied: bool = False
    disabled: bool = False  # a user account that is switched off (userAccountControl bit 2)
    extra: dict[str, Any] = field(default_factory=dict)  # other keys, written back by dump
    dto: dict[str, Any] = field(default_factory=dict)  # the list-members JSON of this object

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "guid": self.guid, "sid": self.sid}
        if self.type == "user" and self.disabled:
            out["disabled"] = True
        if self.type == "group":
            out["members"] = list(self.members)
            out["approval"] = self.approval
            out["denied"] = self.denied
        out.update(self.extra)
        return out


def _id_key(ident: str) -> str:
    key = ident.strip().lower()
    if key.startswith("{") and key.endswith("}"):
        key = key[1:-1]
    return "id:" + key


def _dn_key(dn: str) -> str:
    return "dn:" + normalize_dn(dn)


class AdaxesState:
    def __init__(self, data: dict[str, Any]) -> None:
        tokens = data.get("tokens", [])
        if not isinstance(tokens, list):
            raise StateError("adaxes.tokens must be a list")
        self.tokens: set[str] = {str(t) for t in tokens}
        self.accounts: dict[str, str] = {
            str(k): str(v) for k, v in dict(data.get("accounts", {})).items()
        }
        self.objects: dict[str, AdObject] = {}
        self._index: dict[str, AdObject] = {}
        raw_objects = dict(data.get("objects", {}))
        for dn, raw in raw_objects.items():
            self._load_object(str(dn), raw)
        for dn, raw in raw_objects.items():
            obj = self.objects[dn]
            if obj.type != "group":
                continue
            for ident in raw.get("members", []):
                member = self.resolve(ident) if isinstance(ident, str) else None
                if member is None:
                    raise StateError(f"adaxes group {dn!r}: unknown member {ident!r}")
                obj.members[member.dn] = None

    def _load_object(self, dn: str, raw: object) -> None:
        if not isinstance(raw, dict):
            raise StateError(f"adaxes object {dn!r} must be an object")
        kind, guid, sid = raw.get("type"), raw.get("guid"), raw.get("sid")
        if kind not in _TYPE_CODES:
            raise StateError(f"adaxes object {dn!r}: type must be 'user' or 'group'")
        if not isinstance(guid, str) or not isinstance(sid, str) or not guid or not sid:
            raise StateError(f"adaxes object {dn!r} needs a guid and a sid")
        if not isinstance(raw.get("members", []), list):
            raise StateError(f"adaxes object {dn!r}: members must be a list")
        try:
            name = str(raw.get("displayName") or display_name(dn))
            domain = domain_name(dn)
        except ValueError as exc:
            raise StateError(str(exc)) from None
        obj = AdObject(
            dn=dn,
            type=kind,
            guid=guid,
            sid=sid,
            approval=bool(raw.get("approval", False)),
            denied=bool(raw.get("denied", False)),
            disabled=bool(raw.get("disabled", False)),
            extra={k: v for k, v in raw.items() if k not in _KNOWN_KEYS},
        )
        obj.dto = {
            "guid": guid,
            "dn": dn,
            "displayName": name,
            "objectType": kind,
            "objectTypeCode": _TYPE_CODES[kind],
            "domainName": domain,
            "directoryType": 1,
        }
        for key in (_dn_key(dn), _id_key(guid), _id_key(sid)):
            if key in self._index:
                raise StateError(f"adaxes object {dn!r}: DN, GUID or SID {key!r} is not unique")
            self._index[key] = obj
        self.objects[dn] = obj

    def resolve(self, ident: str) -> AdObject | None:
        """The object named by DN (any valid spelling: case, spaces around RDNs and `=`,
        escape styles), GUID (any case, braces allowed) or SID (any case)."""
        found = self._index.get(_id_key(ident))
        if found is not None or "=" not in ident:
            return found
        try:
            return self._index.get(_dn_key(ident))
        except ValueError:  # not a well-formed DN: no such object
            return None

    def members_of(self, group: AdObject, indirect: bool) -> list[AdObject]:
        if not indirect:
            return [self.objects[dn] for dn in group.members]
        seen: dict[str, AdObject] = {}
        stack = [group]
        visited = {group.dn}
        while stack:
            for dn in stack.pop().members:
                obj = self.objects[dn]
                seen.setdefault(dn, obj)
                if obj.type == "group" and dn not in visited:
                    visited.add(dn)
                    stack.append(obj)
        return list(seen.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": sorted(self.tokens),
            "accounts": dict(self.accounts),
            "objects": {dn: obj.to_json() for dn, obj in self.objects.items()},
        }
