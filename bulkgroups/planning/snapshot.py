"""Group snapshots: each group's membership as read before a run first changed it, kept
beside the results so that `undo` can put back exactly what the run changed.

One gzip member per group, appended: a crash loses at most the group being written, and a
torn last member is ignored on reading. DocSpace never lists terminated members, so a
DocSpace snapshot says that its hidden members are unknown."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

OWNER_ONLY = 0o600


def snapshot_path(results: Path) -> Path:
    name = results.name[: -len(".jsonl")] if results.name.endswith(".jsonl") else results.name
    return results.with_name(f"{name}.snapshot.jsonl.gz")


@dataclass(frozen=True, slots=True)
class SnapMember:
    id: str  # the identifier the API lists first (DocSpace: user id; Adaxes: DN)
    aliases: tuple[str, ...] = ()  # other identifiers of the same object (GUID, SID)
    kind: str = "user"  # DocSpace: "user" or "guest" (a guest cannot be added back)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.kind != "user":
            out["kind"] = self.kind
        return out

    @classmethod
    def from_json(cls, obj: Any) -> SnapMember | None:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            return None
        aliases = obj.get("aliases", [])
        kind = obj.get("kind", "user")
        return cls(obj["id"], tuple(a for a in aliases if isinstance(a, str))
                   if isinstance(aliases, list) else (), kind if isinstance(kind, str) else "user")


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    group: str
    read_at: str
    members: tuple[SnapMember, ...]
    hidden_unknown: bool  # members the API never lists (DocSpace: terminated) may exist

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "read_at": self.read_at,
                "members": [m.to_json() for m in self.members],
                "hidden_unknown": self.hidden_unknown}


class SnapshotWriter:
    """Appends a group's snapshot the first time it is offered; later offers of the same
    group (by `key`) are ignored, so the file keeps the state before the first change."""

    __slots__ = ("_path", "_seen")

    def __init__(self, path: Path, *, seen: Iterable[str] = ()) -> None:
        self._path = path
        self._seen = set(seen)

    def has(self, key: str) -> bool:
        return key in self._seen

    def add(self, key: str, snap: GroupSnapshot) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        data = gzip.compress(orjson.dumps({"key": key, **snap.to_json()}) + b"\n")
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, OWNER_ONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def read_snapshots(path: Path) -> dict[str, GroupSnapshot]:
    """Snapshots by group key, the first of each key; {} when there is no file. A torn or
    corrupt tail (a crash while appending) ends the reading there."""
    out: dict[str, GroupSnapshot] = {}
    for obj in _members(path):
        key, snap = _snap(obj)
        if key is not None and snap is not None:
            out.setdefault(key, snap)
    return out


def _members(path: Path) -> Iterator[Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    while data:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = d.decompress(data)
        except zlib.error:
            return
        if not d.eof:
            return  # a member cut short
        for line in raw.splitlines():
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                return
        data = d.unused_data


def _snap(obj: Any) -> tuple[str | None, GroupSnapshot | None]:
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        return None, None
    members = obj.get("members")
    if not isinstance(obj.get("group"), str) or not isinstance(members, list):
        return None, None
    parsed = tuple(m for m in (SnapMember.from_json(x) for x in members) if m is not None)
    return obj["key"], GroupSnapshot(
        group=obj["group"], read_at=str(obj.get("read_at", "")), members=parsed,
        hidden_unknown=obj.get("hidden_unknown") is True)


def snapshot_hook(writer: SnapshotWriter, *, key: Callable[[str], str],
                  hidden_unknown: bool, now: Callable[[], str]) -> OnReadHook:
    """The adapters' `on_read`: the first read of each group goes into the snapshot file.
    `key` says when two spellings name one group (identity)."""

    def hook(group: str, members: HasSnapshot) -> None:
        k = key(group)
        if not writer.has(k):
            writer.add(k, GroupSnapshot(group, now(), tuple(members.snapshot()),
                                        hidden_unknown))

    return hook


class HasSnapshot(Protocol):
    def snapshot(self) -> list[SnapMember]: ...


OnReadHook = Callable[[str, HasSnapshot], None]
