"""What a selection takes from the directory, checked before anything is read. Pure.

A selection names groups (none: every group, DocSpace only), the members to take from them
(DocSpace: by kind; Adaxes: by property values), and the row each member becomes (`remove`
from the group, `move` to another group, or `add` to another group).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bulkgroups.identity import id_problem
from bulkgroups.model import Op, TargetKind


class MemberKind(StrEnum):
    """DocSpace members by what the server makes of them. A terminated account is
    `terminated` whatever its type; `guest` and `user` are the accounts that are not."""

    USER = "user"
    GUEST = "guest"
    TERMINATED = "terminated"


OPS = (Op.REMOVE, Op.MOVE, Op.ADD)
_PROPERTY_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")  # an LDAP attribute name
_WHERE_RE = re.compile(r"\s*([^=&\s]+)\s*(&?=)\s*(.*?)\s*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Where:
    """`PROPERTY=VALUE` (some value of the property equals VALUE, case ignored) or
    `PROPERTY&=N` (some value has every bit of N set: `userAccountControl&=2` is a
    disabled account, whatever its other flags)."""

    prop: str
    value: str
    bits: bool = False

    def __str__(self) -> str:
        return f"{self.prop}{'&=' if self.bits else '='}{self.value}"

    def matches(self, values: Sequence[Any]) -> bool:
        return any(self._one(v) for v in values)

    def _one(self, v: Any) -> bool:
        if self.bits:
            number = _as_int(v)
            want = int(self.value)
            return number is not None and number & want == want
        if isinstance(v, bool):
            return self.value.casefold() == ("true" if v else "false")
        if isinstance(v, int | float):
            number = _as_int(self.value)
            return number is not None and number == v
        if isinstance(v, str):
            return v.strip().casefold() == self.value.casefold()
        return False


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return None
    return None


def parse_where(text: str) -> Where:
    """`PROPERTY=VALUE` or `PROPERTY&=N`; ValueError says what is wrong."""
    m = _WHERE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r}: write PROPERTY=VALUE (or PROPERTY&=BITS)")
    prop, sign, value = m.groups()
    if _PROPERTY_RE.fullmatch(prop) is None:
        raise ValueError(f"{text!r}: {prop!r} is not an LDAP property name")
    if not value:
        raise ValueError(f"{text!r}: no value after {sign}")
    if sign == "&=":
        number = _as_int(value)
        if number is None or number <= 0:
            raise ValueError(f"{text!r}: &= takes a positive integer (the bits to test)")
    return Where(prop, value, bits=sign == "&=")


def matches(wheres: Iterable[Where], props: Mapping[str, Sequence[Any]]) -> bool:
    """Every property named must match; conditions on the same property are alternatives
    (`department=Sales` twice with HR: either). A member without the property does not
    match. Property names are compared without case, as LDAP does."""
    by_prop: dict[str, list[Where]] = {}
    for w in wheres:
        by_prop.setdefault(w.prop.casefold(), []).append(w)
    folded = {k.casefold(): v for k, v in props.items()}
    for prop, alternatives in by_prop.items():
        values = folded.get(prop)
        if not values or not any(w.matches(values) for w in alternatives):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Selection:
    groups: tuple[str, ...] = ()  # none: every group the target lists
    member_kind: frozenset[MemberKind] = frozenset()  # none: the op's default (`kinds`)
    where: tuple[Where, ...] = ()
    indirect: bool = False
    op: Op = Op.REMOVE
    to_group: str | None = None

    @property
    def kinds(self) -> frozenset[MemberKind]:
        """The DocSpace kinds taken. By default every member for a removal (terminated
        accounts included: they stay members until removed), users only for a move or an
        add (DocSpace skips guests and terminated accounts when it adds)."""
        if self.member_kind:
            return self.member_kind
        if self.op is Op.REMOVE:
            return frozenset(MemberKind)
        return frozenset({MemberKind.USER})

    def properties(self) -> list[str]:
        """The Adaxes properties the member list must carry for `where`, once each."""
        seen: dict[str, str] = {}
        for w in self.where:
            seen.setdefault(w.prop.casefold(), w.prop)
        return list(seen.values())

    def describe(self) -> str:
        parts = [self.op.value]
        if self.to_group:
            parts.append(f"to {self.to_group}")
        if self.member_kind:
            parts.append("kind " + "|".join(sorted(k.value for k in self.member_kind)))
        parts += [f"where {w}" for w in self.where]
        if self.indirect:
            parts.append("indirect")
        return ", ".join(parts)


def selection_problem(kind: TargetKind, sel: Selection) -> tuple[str, str] | None:
    """(which setting, what is wrong) for a selection that cannot run on `kind`; None if it
    can. The names are the job's keys; the command line maps them to its options."""
    if sel.op not in OPS:
        return "op", 'must be "remove", "move" or "add"'
    for g in sel.groups:
        problem = id_problem(kind, g.strip())
        if problem is not None:
            return "groups", f"{g!r}: {problem}"
    if sel.op is Op.REMOVE:
        if sel.to_group is not None:
            return "to_group", 'only with op = "move" or "add"'
    else:
        if sel.to_group is None:
            return "to_group", f'op = "{sel.op.value}" needs to_group (the group they join)'
        problem = id_problem(kind, sel.to_group.strip())
        if problem is not None:
            return "to_group", f"{sel.to_group!r}: {problem}"
    if kind is TargetKind.DOCSPACE:
        if sel.where:
            return "where", "Adaxes only (DocSpace members are chosen by member_kind)"
        if sel.indirect:
            return "indirect", "Adaxes only (DocSpace groups do not nest)"
        if sel.op is not Op.REMOVE and sel.member_kind - {MemberKind.USER}:
            return "member_kind", (
                f'with op = "{sel.op.value}" only "user": DocSpace skips guests and '
                "terminated accounts when it adds, so their rows could only fail")
        return None
    if sel.member_kind:
        return "member_kind", "DocSpace only (Adaxes members are chosen by where)"
    if not sel.groups:
        return "groups", (
            "Adaxes needs the groups named: its member list reads one group, and there is "
            "no call that lists every group without a directory search")
    if sel.indirect and sel.op is not Op.ADD:
        return "indirect", (
            'only with op = "add": a removal (and a move\'s removal) applies to direct '
            "members only; members of nested groups are removed from those groups")
    return None
