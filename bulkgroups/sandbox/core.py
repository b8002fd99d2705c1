"""Everything one running sandbox holds: state, config, log, limiter, faults, tokens."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bulkgroups.sandbox.adaxes_state import AdaxesState
from bulkgroups.sandbox.config import SandboxConfig
from bulkgroups.sandbox.docspace_state import DocSpaceState
from bulkgroups.sandbox.faults import FaultBox
from bulkgroups.sandbox.limits import RateLimiter
from bulkgroups.sandbox.log import LogEntry
from bulkgroups.sandbox.operations import Operations
from bulkgroups.sandbox.tokens import TokenStore


class Core:
    def __init__(self, docspace: DocSpaceState, adaxes: AdaxesState, config: SandboxConfig) -> None:
        self.docspace = docspace
        self.adaxes = adaxes
        self.config = config
        self.log: list[LogEntry] = []
        # Who waits for the log to reach a size: (size, future), woken by `record`.
        self._log_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.limiter = RateLimiter()
        self.faults = FaultBox()
        self.docspace_tokens = TokenStore()
        self.adaxes_tokens = TokenStore()
        self.adaxes_sessions = TokenStore()
        self.operations = Operations()
        self.writes_in_flight: dict[str, int] = {}
        self.in_flight = 0  # API requests being handled now
        self.signin_failures: dict[str, int] = {}

    def record(self, entry: LogEntry) -> None:
        """Append a finished request to the log, and wake those waiting for it to grow."""
        self.log.append(entry)
        size = len(self.log)
        for n, waiter in self._log_waiters:
            if size >= n and not waiter.done():
                waiter.set_result(None)

    async def wait_for_log(self, n: int) -> None:
        """Return once the log holds at least `n` entries (counted anew after a clear)."""
        if len(self.log) >= n:
            return
        waiter = (n, asyncio.get_running_loop().create_future())
        self._log_waiters.append(waiter)
        try:
            await waiter[1]
        finally:
            self._log_waiters.remove(waiter)

    def expire_tokens(self, sessions: bool = False) -> int:
        """Expire every signed-in token (and Adaxes sessions too if asked); how many were valid."""
        count = self.docspace_tokens.expire_all() + self.adaxes_tokens.expire_all()
        if sessions:
            count += self.adaxes_sessions.expire_all()
        return count


CORE = web.AppKey("core", Core)
