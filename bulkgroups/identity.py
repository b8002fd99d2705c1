"""Identifiers, one place: is this string a DocSpace UUID or an Adaxes DN, GUID or SID, and
when do two spellings name the same object (`norm_id`, `ident`). Pure.

Every comparison of ids in bulkgroups goes through `norm_id`: the protected guard, dedupe,
group == to_group, the adapters' membership checks, `plan` and `undo`. One definition, so that
a protected DN spelled another way (case, spaces, escapes, NFC or NFD) is protected exactly
when an adapter would treat it as the same object.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

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


# A GUID as Windows and the APIs write it: braces optional, dashes optional, any case.
_LOOSE_GUID_RE = re.compile(
    rf"\{{?({_HEX}{{8}})-?({_HEX}{{4}})-?({_HEX}{{4}})-?({_HEX}{{4}})-?({_HEX}{{12}})\}}?"
)
# A GUID already in its key's form (as DocSpace writes every id): its own key, with no
# classifying. A member list of thousands is compared this way on every answer.
_KEY_GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Characters kept escaped in the canonical form of a DN value, so that the joined key reads
# one way only ("cn=a\,b" is one RDN, "cn=a,b" two).
_SPECIAL = frozenset(',+="\\<>;#')


class IdKind(StrEnum):
    DN = "dn"  # also anything that is no known id (compared as stripped, NFC, casefolded text)
    GUID = "guid"
    SID = "sid"


@dataclass(frozen=True, slots=True)
class Ident:
    """An identifier's kind and its comparison key (`norm_id`)."""

    kind: IdKind
    key: str


def ident(value: str) -> Ident:
    """Classify an id and give its comparison key (never for sending: the original spelling
    is what goes on the wire)."""
    s = value.strip()
    if _SID_RE.fullmatch(s) is not None:
        return Ident(IdKind.SID, s.casefold())
    if _LOOSE_GUID_RE.fullmatch(s) is not None:
        return Ident(IdKind.GUID, guid_key(s))
    return Ident(IdKind.DN, _text_key(s))


def norm_id(value: str) -> str:
    """The form two ids are compared in: equal exactly when both name the same object.

    Case never matters to either target. A GUID loses braces (and gains dashes); a SID is
    casefolded (`s-1-5-…`); a DN is put in one spelling (no spaces around separators, one way
    of escaping, hex escapes decoded as UTF-8, the values of a multi-valued RDN sorted,
    Unicode in NFC), so a protected "CN=Café, OU=IT" (NFD) matches a row's "cn=café,ou=it".
    Anything else is stripped, NFC-normalised and casefolded.
    """
    if _KEY_GUID_RE.fullmatch(value) is not None:
        return value
    return ident(value).key


def guid_key(value: str) -> str:
    """A GUID without braces, casefolded, in the dashed 8-4-4-4-12 form."""
    m = _LOOSE_GUID_RE.fullmatch(value.strip())
    if m is None:
        return _fold(value.strip())
    return "-".join(m.groups()).casefold()


def normalize_dn(dn: str) -> str:
    """A DN's comparison key (see `norm_id`); a string that is no DN is only folded."""
    return _text_key(dn.strip())


def _fold(text: str) -> str:
    # casefold first, NFC after: NFD "E" + U+0301 and NFC "É" both end as NFC "é".
    return unicodedata.normalize("NFC", text.casefold())


def _text_key(s: str) -> str:
    if "=" in s:
        return _canonical_dn(s)
    return _fold(s)


@functools.lru_cache(maxsize=4096)
def _canonical_dn(dn: str) -> str:
    # Cached: the same few group DNs come back on row after row.
    if _DN_RE.fullmatch(dn) is None:
        return _fold(dn)
    if "\\" not in dn and "+" not in dn and "#" not in dn:
        # Nothing escaped and no multi-valued RDN: every "," and "=" is a separator, and no
        # value holds a character that would need escaping (the DN check refuses them bare).
        return ",".join(
            f"{_fold(attr.strip())}={_fold(value.strip(' '))}"
            for attr, value in (atv.split("=", 1) for atv in dn.split(","))
        )
    rdns: list[list[str]] = [[]]
    for m in _ATV_RE.finditer(dn):
        attr, value, sep = m.groups()
        rdns[-1].append(f"{_fold(attr.strip())}={_canonical_value(value)}")
        if sep == ",":
            rdns.append([])
    return ",".join("+".join(sorted(rdn)) for rdn in rdns)


def _canonical_value(value: str) -> str:
    if value.startswith("#"):  # BER-encoded: compare the hex digits, any case
        return value.strip().casefold()
    if "\\" not in value:
        return _fold(value.strip(" "))
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
        # Hex escapes that are not UTF-8: keep the value as written rather than guess.
        return _fold(value.strip(" "))
    # Unescaped padding was cut by the DN grammar's spaces; a value's own (escaped) leading
    # or trailing space is data and stays, escaped, so it cannot be read as padding.
    body = _fold(_strip_padding(value, text))
    out = "".join("\\" + c if c in _SPECIAL else c for c in body)
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    if out.startswith(" "):
        out = "\\" + out
    return out


def _strip_padding(value: str, text: str) -> str:
    """`text` (the decoded value) without the unescaped spaces that padded `value`."""
    lead = len(value) - len(value.lstrip(" "))
    trail_raw = value.rstrip(" ")
    trail = len(value) - len(trail_raw)
    if trail and trail_raw.endswith("\\") and not trail_raw.endswith("\\\\"):
        trail -= 1  # "a\ " ends in an escaped space: data, not padding
    return text[lead : len(text) - trail if trail else None]
