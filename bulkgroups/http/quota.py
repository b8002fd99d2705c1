"""What a server says of its quota in its headers: pure parsing, no I/O.

Understood: `X-RateLimit-Remaining` / `X-RateLimit-Reset` (DocSpace), the IETF draft's
`RateLimit-Remaining` / `RateLimit-Reset`, its combined `RateLimit: limit=, remaining=, reset=`
(draft 7) and structured `RateLimit: "name";r=..;t=..` (draft 8 on)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

# A reset above this is an epoch time rather than seconds to wait (some servers send either).
_EPOCH_THRESHOLD = 1_000_000_000
_PARAM = re.compile(r"(?:^|[;,\s])(remaining|reset|r|t)\s*=\s*\"?(\d+(?:\.\d+)?)", re.I)


@dataclass(frozen=True, slots=True)
class Quota:
    remaining: float
    reset_s: float  # seconds until the quota refills


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _seconds(reset: float, now: float) -> float:
    return max(0.0, reset - now) if reset > _EPOCH_THRESHOLD else reset


def parse_quota(headers: Mapping[str, str], *, now: float | None = None) -> Quota | None:
    """The quota the headers announce, or None when they announce none."""
    remaining = _number(headers.get("X-RateLimit-Remaining") or headers.get("RateLimit-Remaining"))
    reset = _number(headers.get("X-RateLimit-Reset") or headers.get("RateLimit-Reset"))
    combined = headers.get("RateLimit")
    if combined and (remaining is None or reset is None):
        found = {k.lower(): float(v) for k, v in _PARAM.findall(combined)}
        remaining = found.get("remaining", found.get("r", remaining))
        reset = found.get("reset", found.get("t", reset))
    if remaining is None or reset is None:
        return None
    return Quota(remaining=remaining, reset_s=_seconds(reset, time.time() if now is None else now))


def parse_reset(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until `X-RateLimit-Reset` (or `RateLimit-Reset`), a Unix time or a delta;
    None when absent or unreadable. On a 429 it says when to try again."""
    reset = _number(headers.get("X-RateLimit-Reset") or headers.get("RateLimit-Reset"))
    if reset is None or reset < 0:
        return None
    return _seconds(reset, time.time() if now is None else now)
