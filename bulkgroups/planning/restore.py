"""Exact undo from snapshots: the rows that put every member a run changed back to its state
before the run, and nothing else.

The results say what the run changed; the snapshot says how each group was before the run
first changed it. A change of nothing (a DocSpace `ok` for a member that was not there) gets
no row; a change the API cannot reverse (DocSpace adds skip guests and terminated accounts)
is listed instead of written as a row that would silently do nothing. Someone else's change
since the run is left alone when the undo file is planned and applied (`already`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bulkgroups.model import Op
from bulkgroups.planning.snapshot import GroupSnapshot


@dataclass(frozen=True, slots=True)
class Change:
    """One membership the run changed: `member` joined (`joined`) or left `group`."""

    group: str
    member: str
    joined: bool


def changes_of(op: str, group: str, member: str, to_group: str,
               moved: Iterable[str] | None, left: Iterable[str] | None) -> list[Change]:
    """What an `ok` results line changed, in order."""
    if op == Op.REMOVE.value:
        return [Change(group, member, joined=False)]
    if op == Op.ADD.value:
        return [Change(group, member, joined=True)]
    if op == Op.MOVE.value:
        only_left = member in (left or ())
        out = [] if only_left else [Change(to_group, member, joined=True)]
        return [*out, Change(group, member, joined=False)]
    if op == Op.MOVE_ALL.value:
        out = []
        for m in moved or ():
            out += [Change(to_group, m, joined=True), Change(group, m, joined=False)]
        out += [Change(group, m, joined=False) for m in left or ()]
        return out
    return []


@dataclass(frozen=True, slots=True)
class Unrestorable:
    group: str
    member: str
    why: str


@dataclass(slots=True)
class Restore:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # op, group, member, to
    cannot: list[Unrestorable] = field(default_factory=list)
    unchanged: int = 0  # changes of nothing: the member was already so before the run
    unsnapped: list[Change] = field(default_factory=list)  # groups with no snapshot


class _Before:
    """A group as its snapshot has it: who was a member, and of what kind."""

    __slots__ = ("hidden_unknown", "kinds")

    def __init__(self, snap: GroupSnapshot, key: Callable[[str], str]) -> None:
        self.kinds: dict[str, str] = {}
        for m in snap.members:
            for ident in (m.id, *m.aliases):
                self.kinds[key(ident)] = m.kind
        self.hidden_unknown = snap.hidden_unknown

    def kind(self, member_key: str) -> str | None:
        return self.kinds.get(member_key)


def restore(changes: Iterable[Change], snapshots: dict[str, GroupSnapshot], *,
            key: Callable[[str], str], kind: str) -> Restore:
    """`kind`: the target's ("docspace" cannot add guests or terminated accounts back)."""
    final: dict[tuple[str, str], Change] = {}
    for c in changes:
        final[(key(c.group), key(c.member))] = c
    out = Restore()
    befores = {k: _Before(s, key) for k, s in snapshots.items()}
    adds: dict[str, list[Change]] = {}
    removes: dict[str, list[Change]] = {}
    for (gk, mk), c in final.items():
        before = befores.get(gk)
        if before is None:
            out.unsnapped.append(c)
            continue
        was = before.kind(mk)
        if c.joined:
            if was is None:
                removes.setdefault(mk, []).append(c)
            else:
                out.unchanged += 1
            continue
        if was is None and not (kind == "docspace" and before.hidden_unknown):
            out.unchanged += 1  # it was not a member: the removal changed nothing
            continue
        why = _cannot_add(was, kind)
        if why is not None:
            out.cannot.append(Unrestorable(c.group, c.member, why))
            continue
        adds.setdefault(mk, []).append(c)
    _rows(out, adds, removes)
    return out


def _cannot_add(was: str | None, kind: str) -> str | None:
    if kind != "docspace":
        return None
    if was == "guest":
        return "a guest: DocSpace does not add guests to groups, so it cannot be put back"
    if was is None:
        return ("not listed before the run: a terminated account, which DocSpace does not add "
                "back (or it was not a member)")
    return None


def _rows(out: Restore, adds: dict[str, list[Change]],
          removes: dict[str, list[Change]]) -> None:
    # One move row where a member left one group and joined one other: add first, then
    # remove, so the member is never in neither group on the way back.
    for mk in list(adds):
        a, r = adds[mk], removes.get(mk, [])
        if len(a) == 1 and len(r) == 1:
            out.rows.append(("move", r[0].group, a[0].member, a[0].group))
            del adds[mk], removes[mk]
    for cs in adds.values():
        out.rows += [("add", c.group, c.member, "") for c in cs]
    for cs in removes.values():
        out.rows += [("remove", c.group, c.member, "") for c in cs]
