"""Distinguished names: escape a value, split a DN into its RDNs (RFC 4514, enough for AD)."""

from __future__ import annotations

_SPECIAL = frozenset(',+"\\<>;=')
_HEX = frozenset(b"0123456789abcdefABCDEF")


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


def split_dn(dn: str) -> list[tuple[str, str]]:
    """[(attribute, unescaped value), ...]; raises ValueError on a malformed DN."""
    parts: list[tuple[str, str]] = []
    attr: str | None = None
    buf: list[str] = []
    raw = dn.encode("utf-8")
    i = 0
    pending = bytearray()

    def flush_value() -> str:
        text = bytes(pending).decode("utf-8")
        pending.clear()
        return text

    while i < len(raw):
        ch = raw[i : i + 1]
        if attr is None:
            if ch == b"=":
                attr = "".join(buf).strip()
                buf.clear()
                if not attr:
                    raise ValueError(f"empty attribute name in DN {dn!r}")
            elif ch in (b",", b"+"):
                raise ValueError(f"malformed DN {dn!r}")
            else:
                buf.append(ch.decode("latin-1"))
            i += 1
            continue
        if ch == b"\\":
            pair = raw[i + 1 : i + 3]
            if len(pair) == 2 and all(b in _HEX for b in pair):
                pending.append(int(pair, 16))
                i += 3
                continue
            if not pair:
                raise ValueError(f"DN ends in a backslash: {dn!r}")
            pending.extend(pair[:1])
            i += 2
            continue
        if ch in (b",", b"+"):
            parts.append((attr, flush_value().strip()))
            attr = None
        else:
            pending.extend(ch)
        i += 1
    if attr is None:
        raise ValueError(f"malformed DN {dn!r}")
    parts.append((attr, flush_value().strip()))
    return parts


def display_name(dn: str) -> str:
    """The first RDN's value, unescaped: `CN=Lee\\, Ann,OU=Users,...` -> `Lee, Ann`."""
    return split_dn(dn)[0][1]


def domain_name(dn: str) -> str:
    """The DNS domain from the DC components: `...,DC=example,DC=com` -> `example.com`."""
    return ".".join(v for a, v in split_dn(dn) if a.upper() == "DC")
