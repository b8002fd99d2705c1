"""Fault injection: random faults from one seeded generator, and forced answers (`inject`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

API_NAMES = ("docspace", "adaxes", "auth")
AFTER_APPLY_STATUSES = (0, 502, 503, 504)


@dataclass
class Faults:
    """Random faults on the data endpoints of both APIs (never sign-in nor /_sandbox/*)."""

    seed: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0  # extra latency, uniform in [0, jitter_ms)
    error_503_ratio: float = 0.0
    drop_ratio: float = 0.0  # close the connection without an answer, change NOT applied
    drop_after_apply_ratio: float = 0.0  # apply the change, then close without an answer
    ratelimit_429_ratio: float = 0.0
    # apply the change, then answer nginx's 504 page: the proxy gave up, the server finished
    timeout_after_apply_ratio: float = 0.0
    retry_after_s: float = 1.0  # Retry-After of the 429 fault and of Adaxes's 503 fault

    @property
    def active(self) -> bool:
        return bool(
            self.latency_ms
            or self.jitter_ms
            or self.error_503_ratio
            or self.drop_ratio
            or self.drop_after_apply_ratio
            or self.ratelimit_429_ratio
            or self.timeout_after_apply_ratio
        )


@dataclass(frozen=True, slots=True)
class Draw:
    """What the faults decided for one request."""

    delay_s: float
    before: Literal["drop", "503", "429"] | None  # answer this instead of handling
    drop_after: bool  # handle, then drop the answer
    timeout_after: bool = False  # handle, then answer 504 as the proxy would


@dataclass(slots=True)
class Injection:
    """A forced answer for the next `remaining` requests (status 0 = drop the connection;
    with `after_apply`, only once the request was handled: a lost answer, dropped (status 0)
    or replaced by the proxy's 502/503/504 page)."""

    status: int
    remaining: int
    retry_after_s: float | None
    api: str | None  # None: any docspace or adaxes data request
    after_apply: bool = False


def retry_after_value(seconds: float) -> str:
    """Retry-After text: whole seconds when whole, else a decimal (sandbox-only fast tests)."""
    value = float(seconds)
    return str(int(value)) if value.is_integer() else f"{value:g}"


class FaultBox:
    """Draws faults; reseeds whenever `config.faults` is replaced or its seed changes."""

    def __init__(self) -> None:
        self._rng = random.Random(0)
        self._faults: Faults | None = None
        self._seed = 0
        self.injections: list[Injection] = []

    def draw(self, faults: Faults) -> Draw | None:
        if faults is not self._faults or faults.seed != self._seed:
            self._faults, self._seed = faults, faults.seed
            self._rng = random.Random(faults.seed)
        if not faults.active:
            return None
        r = self._rng.random
        delay_s = (faults.latency_ms + faults.jitter_ms * r()) / 1000.0
        drop, fail, limited, lost = r(), r(), r(), r()
        before: Literal["drop", "503", "429"] | None = None
        if drop < faults.drop_ratio:
            before = "drop"
        elif fail < faults.error_503_ratio:
            before = "503"
        elif limited < faults.ratelimit_429_ratio:
            before = "429"
        drop_after = before is None and lost < faults.drop_after_apply_ratio
        # Drawn only when asked for, so older seeds give the same faults as before.
        timeout_after = (
            faults.timeout_after_apply_ratio > 0
            and before is None
            and not drop_after
            and r() < faults.timeout_after_apply_ratio
        )
        return Draw(delay_s, before, drop_after, timeout_after)

    def inject(
        self,
        status: int,
        count: int = 1,
        retry_after_s: float | None = None,
        api: str | None = None,
        after_apply: bool = False,
    ) -> None:
        if status != 0 and not 100 <= status <= 599:
            raise ValueError(f"status must be 0 (drop) or an HTTP status, not {status}")
        if after_apply and status not in AFTER_APPLY_STATUSES:
            raise ValueError(
                "after_apply needs status 0 (drop) or 502/503/504 (the proxy's page):"
                " only a lost answer comes after the change"
            )
        if count < 1:
            raise ValueError("count must be at least 1")
        if api is not None and api not in API_NAMES:
            raise ValueError(f"api must be one of {API_NAMES} or None, not {api!r}")
        self.injections.append(Injection(status, count, retry_after_s, api, after_apply))

    def take(self, api: str) -> Injection | None:
        """The injection that applies to this request, consuming one of its count."""
        for injection in self.injections:
            if injection.api == api or (injection.api is None and api != "auth"):
                injection.remaining -= 1
                if injection.remaining <= 0:
                    self.injections.remove(injection)
                return injection
        return None
