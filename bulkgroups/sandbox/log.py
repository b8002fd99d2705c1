"""The request log: one entry per finished request (control requests are not logged)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def token_label(credential: str) -> str:
    """A short, non-secret label of a credential: its first 4 characters, or "" if none."""
    return credential[:4] + "…" if credential else ""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One request as the sandbox saw it.

    `start` and `end` are `time.monotonic()` readings, the same clock in every process on Linux.
    """

    start: float
    end: float
    method: str
    path: str  # decoded, without the query
    query: str  # raw query string
    status: int  # 0 when the connection was dropped without an answer
    api: str  # "docspace" | "adaxes" | "auth"
    writes_in_flight: int  # non-GET requests in flight for this credential when this one started
    token: str  # token_label() of the credential
    # The member ids a write named (body `members`, `membersToAdd`/`membersToRemove`,
    # `newMember`, or the query's `member`): what tests assert a run did or did not send.
    members: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "api": self.api,
            "writes_in_flight": self.writes_in_flight,
            "token": self.token,
            "members": list(self.members),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogEntry:
        """Rebuild an entry from `GET /_sandbox/log` output."""
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            method=str(data["method"]),
            path=str(data["path"]),
            query=str(data["query"]),
            status=int(data["status"]),
            api=str(data["api"]),
            writes_in_flight=int(data["writes_in_flight"]),
            token=str(data["token"]),
            members=tuple(str(m) for m in data.get("members", ())),
        )


def max_in_window(starts: Sequence[float], window_s: float) -> int:
    """The most request starts that fall in any window of `window_s` seconds (half-open)."""
    ordered = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def max_overlap(spans: Iterable[tuple[float, float]]) -> int:
    """The most requests in flight at once, from (start, end) pairs."""
    pairs = list(spans)
    events = sorted([(s, 1) for s, _ in pairs] + [(e, -1) for _, e in pairs])
    best = cur = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best
