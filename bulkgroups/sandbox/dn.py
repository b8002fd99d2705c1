"""Distinguished names: escape a value, split a DN into its RDNs, and the normal form under
which Active Directory calls two spellings the same object (RFC 4514, enough for AD).

The emulator keeps its own parser: it stands apart from the client it is there to test.
"""

from __future__ import annotations

import unicodedata

_SPECIAL = frozenset(',+"\\<>;=')
_HEX = frozenset("0123456789abcdefABCDEF")
# Escaped again in a normal form, so that a key reads one way only ("cn=a\,b" is one RDN).
_KEY_SPECIAL = frozenset(',+"\\<>;=#')

# A DN as (character, was-escaped) pairs: an escaped comma is data, a bare one a separator.
_Tok = tuple[str, bool]


def escape_value(value: str) -> str:
    """Escape an attribute value for use in a DN: `Lee, Ann` -> `Lee\\, Ann`."""
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in _SPECIAL or (i == 0 and ch in "# ") or (i == last and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _tokens(dn: str) -> list[_Tok]:
    """Decode escapes: `\\,` is a comma, `\\2C` too; runs of hex pairs are UTF-8 bytes."""
    out: list[_Tok] = []
    pending = bytearray()

    def flush() -> None:
        if pending:
            try:
                text = pending.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"hex escapes that are not UTF-8 in DN {dn!r}") from None
            out.extend((ch, True) for ch in text)
            pending.clear()

    i, n = 0, len(dn)
    while i < n:
        ch = dn[i]
        if ch != "\\":
            flush()
            out.append((ch, False))
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError(f"DN ends in a backslash: {dn!r}")
        pair = dn[i + 1 : i + 3]
        if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
            pending.append(int(pair, 16))
            i += 3
            continue
        flush()
        out.append((dn[i + 1], True))
        i += 2
    flush()
    return out


def _split(toks: list[_Tok], sep: str) -> list[list[_Tok]]:
    parts: list[list[_Tok]] = [[]]
    for tok in toks:
        if tok == (sep, False):
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


def _strip(toks: list[_Tok]) -> list[_Tok]:
    """Drop padding: unescaped spaces at either end (`CN=x\\ ` keeps its escaped space)."""
    start, end = 0, len(toks)
    while start < end and toks[start] == (" ", False):
        start += 1
    while end > start and toks[end - 1] == (" ", False):
        end -= 1
    return toks[start:end]


def _text(toks: list[_Tok]) -> str:
    return "".join(ch for ch, _ in toks)


def _rdns(dn: str) -> list[list[tuple[str, str]]]:
    """[[(attribute, value), ...] per RDN], values unescaped and stripped of padding."""
    rdns: list[list[tuple[str, str]]] = []
    for rdn in _split(_tokens(dn), ","):
        avas: list[tuple[str, str]] = []
        for ava in _split(rdn, "+"):
            eq = next((i for i, tok in enumerate(ava) if tok == ("=", False)), None)
            if eq is None:
                raise ValueError(f"malformed DN {dn!r}: {_text(ava).strip()!r} has no '='")
            attr = _text(_strip(ava[:eq]))
            if not attr or any(escaped for _, escaped in ava[:eq]):
                raise ValueError(f"malformed DN {dn!r}: bad attribute name {attr!r}")
            avas.append((attr, _text(_strip(ava[eq + 1 :]))))
        rdns.append(avas)
    return rdns


def split_dn(dn: str) -> list[tuple[str, str]]:
    """[(attribute, unescaped value), ...]; raises ValueError on a malformed DN."""
    return [ava for rdn in _rdns(dn) for ava in rdn]


def _fold(text: str) -> str:
    """Canonical caseless form: casefold between NFD and NFC (`Zoë`, `ZOË`, `Zoe` + U+0308)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


def normalize_dn(dn: str) -> str:
    """The key two spellings of one DN share: RDNs split on unescaped commas (and plus signs),
    spaces around RDNs and `=` dropped, `\\,` and `\\2C` escapes decoded (UTF-8), the parts
    of a multi-valued RDN sorted, NFC, casefolded; specials escaped again so the key is
    unambiguous. Raises ValueError on a malformed DN."""
    out: list[str] = []
    for rdn in _rdns(dn):
        avas = []
        for attr, value in rdn:
            folded = _fold(value)
            escaped = "".join("\\" + ch if ch in _KEY_SPECIAL else ch for ch in folded)
            avas.append(f"{attr.casefold()}={escaped}")
        out.append("+".join(sorted(avas)))
    return ",".join(out)


def display_name(dn: str) -> str:
    """The first RDN's value, unescaped: `CN=Lee\\, Ann,OU=Users,...` -> `Lee, Ann`."""
    return split_dn(dn)[0][1]


def domain_name(dn: str) -> str:
    """The DNS domain from the DC components: `...,DC=example,DC=com` -> `example.com`."""
    return ".".join(v for a, v in split_dn(dn) if a.upper() == "DC")
