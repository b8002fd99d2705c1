"""Directory identifiers (DN, GUID, SID) reduced to keys that compare equal when Active
Directory would call them the same object.

Adaxes accepts a group or member as a DN, a GUID or a SID, and its member list answers with
DNs and GUIDs spelled its own way (case, spaces after commas, escapes). Membership decisions
must not hang on spelling, so every comparison goes through `ident()`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

_GUID = re.compile(
    r"^\{?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?"
    r"([0-9a-fA-F]{12})\}?$"
)
_SID = re.compile(r"^[sS]-1(-\d+)+$")
_HEX = frozenset("0123456789abcdefABCDEF")
# Characters that must stay escaped in the canonical value so that the joined key cannot be
# read two ways ("CN=a\,b" is one RDN, "CN=a,b" would be two).
_SPECIAL = frozenset(',+="\\<>;#')


class IdKind(StrEnum):
    DN = "dn"
    GUID = "guid"
    SID = "sid"


@dataclass(frozen=True, slots=True)
class Ident:
    """An identifier's kind and its comparison key."""

    kind: IdKind
    key: str


def ident(value: str) -> Ident:
    """Classify an identifier and normalise it for comparison (never for sending: the
    original spelling is what goes on the wire)."""
    text = value.strip()
    if _SID.match(text):
        return Ident(IdKind.SID, text.upper())
    if _GUID.match(text):
        return Ident(IdKind.GUID, guid_key(text))
    return Ident(IdKind.DN, normalize_dn(text))


def guid_key(value: str) -> str:
    """A GUID without braces, casefolded, in the dashed 8-4-4-4-12 form."""
    m = _GUID.match(value.strip())
    if m is None:
        return value.strip().casefold()
    return "-".join(m.groups()).casefold()


def sid_key(value: str) -> str:
    return value.strip().upper()


def normalize_dn(dn: str) -> str:
    """Split on unescaped commas, strip spaces around each RDN and around `=`, decode escapes
    (`\\,` and `\\2C` are the same comma), sort the parts of a multi-valued RDN, casefold."""
    rdns: list[str] = []
    for rdn in _split(_tokens(dn), ","):
        avas: list[str] = []
        for ava in _split(rdn, "+"):
            kind, value = _partition_eq(ava)
            avas.append(_text(_strip(kind)).casefold() + "=" + _canon(_strip(value)))
        rdns.append("+".join(sorted(avas)))
    return ",".join(rdns)


# A DN as (character, was-escaped) pairs: an escaped comma is data, a bare one a separator.
_Tok = tuple[str, bool]


def _tokens(dn: str) -> list[_Tok]:
    out: list[_Tok] = []
    pending = bytearray()  # hex escapes spell UTF-8 bytes: "\C3\9C" is one "Ü"

    def flush() -> None:
        if pending:
            out.extend((ch, True) for ch in pending.decode("utf-8", errors="replace"))
            pending.clear()

    i, n = 0, len(dn)
    while i < n:
        ch = dn[i]
        if ch == "\\" and i + 1 < n:
            nxt = dn[i + 1]
            if nxt in _HEX and i + 2 < n and dn[i + 2] in _HEX:
                pending.append(int(dn[i + 1 : i + 3], 16))
                i += 3
                continue
            flush()
            out.append((nxt, True))
            i += 2
            continue
        flush()
        out.append((ch, False))
        i += 1
    flush()
    return out


def _split(toks: list[_Tok], sep: str) -> list[list[_Tok]]:
    parts: list[list[_Tok]] = [[]]
    for ch, escaped in toks:
        if ch == sep and not escaped:
            parts.append([])
        else:
            parts[-1].append((ch, escaped))
    return parts


def _partition_eq(toks: list[_Tok]) -> tuple[list[_Tok], list[_Tok]]:
    for i, (ch, escaped) in enumerate(toks):
        if ch == "=" and not escaped:
            return toks[:i], toks[i + 1 :]
    return [], toks


def _strip(toks: list[_Tok]) -> list[_Tok]:
    # Only unescaped spaces are padding; "CN=x\ " keeps its trailing space.
    start, end = 0, len(toks)
    while start < end and toks[start] == (" ", False):
        start += 1
    while end > start and toks[end - 1] == (" ", False):
        end -= 1
    return toks[start:end]


def _text(toks: list[_Tok]) -> str:
    return "".join(ch for ch, _ in toks)


def _canon(toks: list[_Tok]) -> str:
    value = unicodedata.normalize("NFC", _text(toks)).casefold()
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in value)
