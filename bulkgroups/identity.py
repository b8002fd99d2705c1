"""Identifier checks: is this string a DocSpace UUID, or an Adaxes DN, GUID or SID? Pure."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from bulkgroups.model import TargetKind

_HEX = "[0-9A-Fa-f]"
_UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_UUID_RE = re.compile(_UUID)
_GUID_RE = re.compile(rf"{_UUID}|\{{{_UUID}\}}")

# S-1-<identifier authority>-<sub-authority>...: the authority is decimal, or 0x + 12 hex
# digits when it does not fit 32 bits; Windows allows at most 15 sub-authorities.
_SID_RE = re.compile(r"[Ss]-1-(?:[0-9]{1,13}|0[xX][0-9A-Fa-f]{12})(?:-[0-9]{1,10}){1,15}")

# RFC 4514, loosened the way directory tools write DNs by hand: spaces may follow a
# separator or surround "=". A value is a run of plain characters and escapes; the
# characters that must be escaped (and control characters) never appear bare. "=" is
# refused bare although RFC 4514 allows it: Active Directory always escapes it, and a bare
# one in a value usually means a missing comma ("CN=a OU=b").
_ATTR = r"[ ]*(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)[ ]*"
_ESCAPE = rf"\\(?:[ \"#+,;<=>\\]|{_HEX}{{2}})"
_PLAIN = r'[^\x00-\x1f\x7f"+,;<=>\\]'
# A value is either the BER form (#hex...) or a string that does not start with a bare "#"
# and is not only spaces. The string is written as plain* (escape plain*)*, which the regex
# engine matches in one pass: no backtracking blow-up on a long value that fails.
_VALUE = (
    rf"(?:#(?:{_HEX}{{2}})+[ ]*"
    rf"|(?![ ]*(?:[,+]|\Z))(?!#){_PLAIN}*(?:{_ESCAPE}{_PLAIN}*)*)"
)
_ATV = f"{_ATTR}={_VALUE}"
_DN_RE = re.compile(f"{_ATV}(?:[,+]{_ATV})*")
_ATV_RE = re.compile(f"({_ATTR})=({_VALUE})([,+]?)")
_UNESCAPE_RE = re.compile(rf"\\({_HEX}{{2}})|\\(.)", re.DOTALL)
# Characters re-escaped in the canonical form of a DN value.
_MUST_ESCAPE = frozenset('\\,+";<>=')


def is_uuid(s: str) -> bool:
    """Canonical 8-4-4-4-12 hex, either case, no braces."""
    return _UUID_RE.fullmatch(s) is not None


def is_guid(s: str) -> bool:
    """A UUID, optionally in braces as Windows writes it."""
    return _GUID_RE.fullmatch(s) is not None


def is_sid(s: str) -> bool:
    return _SID_RE.fullmatch(s) is not None


def is_dn(s: str) -> bool:
    return _DN_RE.fullmatch(s) is not None


def is_adaxes_id(s: str) -> bool:
    """A distinguished name, a GUID (braces optional) or a SID."""
    if "=" in s:
        return _DN_RE.fullmatch(s) is not None
    return _GUID_RE.fullmatch(s) is not None or _SID_RE.fullmatch(s) is not None


def id_check(kind: TargetKind) -> Callable[[str], object]:
    """The fastest truth test for a `kind` id (truthy when valid), for per-row loops."""
    if kind is TargetKind.DOCSPACE:
        return _UUID_RE.fullmatch
    return is_adaxes_id


def id_problem(kind: TargetKind, value: str) -> str | None:
    """None when `value` identifies a group or member on a `kind` target, else why not."""
    if not value:
        return "empty"
    if kind is TargetKind.DOCSPACE:
        return None if _UUID_RE.fullmatch(value) is not None else "not a UUID"
    return None if is_adaxes_id(value) else "not a DN, GUID or SID"


def norm_id(value: str) -> str:
    """The form two ids are compared in (protected lists, duplicates, group == to_group).

    Case never matters to either target. Beyond `casefold()`, a braced GUID loses its braces
    and a DN is put in one spelling (no spaces around separators, one way of escaping, the
    values of a multi-valued RDN sorted), so that a protected "CN=Admins, OU=IT" still
    matches a row that says "cn=admins,ou=it".
    """
    s = value.strip()
    if s.startswith("{") and _GUID_RE.fullmatch(s) is not None:
        s = s[1:-1]
    elif "=" in s:
        s = _canonical_dn(s)
    return s.casefold()


@functools.lru_cache(maxsize=4096)
def _canonical_dn(dn: str) -> str:
    # Cached: the same few group DNs come back on row after row.
    if _DN_RE.fullmatch(dn) is None:
        return dn
    if "\\" not in dn and "+" not in dn and "#" not in dn:
        # Nothing escaped and no multi-valued RDN: every "," and "=" is a separator.
        return ",".join(
            f"{attr.strip()}={value.strip(' ')}"
            for attr, value in (atv.split("=", 1) for atv in dn.split(","))
        )
    rdns: list[list[str]] = [[]]
    for m in _ATV_RE.finditer(dn):
        attr, value, sep = m.groups()
        rdns[-1].append(f"{attr.strip().casefold()}={_canonical_value(value)}")
        if sep == ",":
            rdns.append([])
    return ",".join("+".join(sorted(rdn, key=str.casefold)) for rdn in rdns)


def _canonical_value(value: str) -> str:
    if value.startswith("#"):  # BER-encoded: compare the hex digits as written
        return value.strip()
    if "\\" not in value:
        return value.strip(" ")
    raw = bytearray()
    pos = 0
    for m in _UNESCAPE_RE.finditer(value):
        raw += value[pos : m.start()].encode("utf-8")
        hexpair, char = m.groups()
        raw += bytes.fromhex(hexpair) if hexpair else char.encode("utf-8")
        pos = m.end()
    raw += value[pos:].encode("utf-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Hex escapes that are not UTF-8: leave the value as written rather than guess.
        return value.strip(" ")
    out = "".join(f"\\{c}" if c in _MUST_ESCAPE else c for c in text.strip(" "))
    return f"\\{out}" if out.startswith("#") else out
