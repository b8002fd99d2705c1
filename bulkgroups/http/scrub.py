"""Scrubbing: no credential leaves a server's words. Pure, no I/O.

Every text a server sends back (error messages, exception and inner messages, sign-in
refusals) may repeat what it received: the token, the password, a session id. The transport
passes every such text through one `Scrubber` before it returns or raises it, so nothing
downstream (stderr, results.jsonl, meta, report) can print one.

Two layers: the exact secrets the run holds (replaced wherever they appear, also inside a
large body, as bytes), and shapes that look like credentials (`Bearer …`, `sk-…`, JWTs,
`token=…`, long base64/hex runs) for secrets the run does not know, e.g. another user's.
Ids the messages must keep naming — GUIDs, SIDs, DNs — are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

# Shorter exact values are not scrubbed: a one-letter password would mangle every text.
_MIN_SECRET = 4

_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(Bearer|Basic)\s+[^\s\"',;]+", re.I), r"\1 " + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-.]+"), "sk-" + MASK),
    (re.compile(r"\beyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]*"), MASK),  # JWT
    (
        re.compile(
            r"(?i)\b(token|password|passwd|pwd|secret|session_?id|sessionid|"
            r"asc_auth_key|adm-authorization|authorization|api_?key)"
            r"(\"?\s*[:=]\s*\"?)[^\s\"',;&]+"
        ),
        r"\1\2" + MASK,
    ),
)
# A long run of token characters; judged by `_looks_secret` before it is masked.
_RUN = re.compile(r"(?<![A-Za-z0-9_+=-])[A-Za-z0-9_+=-]{32,}")
_GUID = re.compile(r"\{?[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\}?")
_SID = re.compile(r"S-1(-\d+)+", re.I)


def _looks_secret(run: str) -> bool:
    if _GUID.fullmatch(run) or _SID.fullmatch(run):
        return False
    # A token mixes letters and digits; a long word or number is not one.
    return any(c.isdigit() for c in run) and any(c.isalpha() for c in run)


class Scrubber:
    """`scrub(text)` masks the run's secrets and credential-like shapes; `add()` learns a
    secret met later (a signed-in token, a session id)."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str) -> None:
        secret = secret.strip()
        if len(secret) >= _MIN_SECRET:
            self._secrets.add(secret)

    def _ordered(self) -> list[str]:
        # Longest first, so a secret containing another is masked whole.
        return sorted(self._secrets, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._ordered():
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern, repl in _SHAPES:
            text = pattern.sub(repl, text)
        return _RUN.sub(lambda m: MASK if _looks_secret(m.group(0)) else m.group(0), text)

    def scrub_bytes(self, raw: bytes) -> bytes:
        """Exact secrets only: cheap enough for a 16 MB body, before it is decoded."""
        for secret in self._ordered():
            needle = secret.encode("utf-8", "surrogateescape")
            if needle in raw:
                raw = raw.replace(needle, MASK.encode())
        return raw

    def scrub_json(self, value: Any) -> Any:
        """Every string of a decoded (small) body, keys included."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, list):
            return [self.scrub_json(v) for v in value]
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.scrub_json(v) for k, v in value.items()}
        return value
