"""The aiohttp application and `Sandbox`, the async context manager that serves it."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from aiohttp import web

from bulkgroups.sandbox import (
    adaxes,
    adaxes_auth,
    control,
    docspace,
    docspace_auth,
    docspace_people,
)
from bulkgroups.sandbox.config import TENANT_MODES, SandboxConfig, TenantMode
from bulkgroups.sandbox.core import CORE, Core
from bulkgroups.sandbox.log import LogEntry
from bulkgroups.sandbox.pipeline import pipeline
from bulkgroups.sandbox.state import StateSource, dump_state, load_state


def build_app(core: Core) -> web.Application:
    app = web.Application(middlewares=[pipeline], client_max_size=16 * 1024 * 1024)
    app[CORE] = core
    for module in (docspace, docspace_people, docspace_auth, adaxes, adaxes_auth, control):
        app.router.add_routes(module.routes)
    return app


class Sandbox:
    """A running emulator of both APIs on one loopback port.

    >>> async with Sandbox(make_state()) as sb:  # doctest: +SKIP
    ...     sb.base_url, sb.adaxes_url
    """

    def __init__(
        self,
        state: StateSource | None = None,
        *,
        config: SandboxConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout_s: float = 0.5,
    ) -> None:
        docspace_state, adaxes_state = load_state(state)  # StateError on a bad state
        self._core = Core(docspace_state, adaxes_state, config or SandboxConfig())
        self._host = host
        self._port = port
        self._shutdown_timeout_s = shutdown_timeout_s
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.adaxes_url = ""

    @property
    def config(self) -> SandboxConfig:
        return self._core.config

    @config.setter
    def config(self, value: SandboxConfig) -> None:
        self._core.config = value

    @property
    def log(self) -> list[LogEntry]:
        """Finished requests, oldest first (the same list object for the sandbox's life)."""
        return self._core.log

    @property
    def in_flight(self) -> int:
        """API requests being handled right now (control requests not counted)."""
        return self._core.in_flight

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("this sandbox is already running")
        runner = web.AppRunner(
            build_app(self._core),
            access_log=None,
            shutdown_timeout=self._shutdown_timeout_s,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.base_url = f"http://{host}:{self._port}"
        self.adaxes_url = self.base_url + "/restApi"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        self._core.operations.cancel_all()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def dump(self) -> dict[str, Any]:
        """The current state, in the same JSON format as the input."""
        return dump_state(self._core.docspace, self._core.adaxes)

    def inject(
        self,
        status: int = 429,
        count: int = 1,
        retry_after_s: float | None = None,
        api: str | None = None,
        after_apply: bool = False,
    ) -> None:
        """Force the next `count` data requests (of `api` if given; "auth" for sign-in) to get
        `status`, with Retry-After if `retry_after_s` is given; status 0 drops the connection.
        DocSpace's 502, 503 and 504 come as nginx's HTML pages.

        With `after_apply` (status 0, 502, 503 or 504), each such request is handled as usual
        (checked, applied) and only then is its answer lost: the connection dropped (0) or
        replaced by the proxy's page (504: the proxy timed out, the server finished)."""
        self._core.faults.inject(status, count, retry_after_s, api, after_apply)

    async def wait_for_requests(self, n: int, *, timeout_s: float = 30.0) -> None:
        """Return once the log holds at least `n` entries; TimeoutError after `timeout_s`.

        Woken by each entry the server appends (no polling). Call it on the loop that serves
        the sandbox. The count is of the log as it is: `clear_log()` starts it again."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._core.wait_for_log(n)
        except TimeoutError:
            raise TimeoutError(
                f"the sandbox log holds {len(self._core.log)} of {n} requests"
                f" after {timeout_s:g} s"
            ) from None

    def expire_tokens(self, sessions: bool = False) -> int:
        """Every token signed in so far is expired now (Adaxes sessions too if `sessions`)."""
        return self._core.expire_tokens(sessions=sessions)

    def issued_tokens(self) -> dict[str, list[str]]:
        """Every signed-in credential issued so far, by store: "docspace" and "adaxes" tokens,
        "adaxes_sessions" ids (signed-out and expired ones too)."""
        core = self._core
        return {
            "docspace": core.docspace_tokens.issued(),
            "adaxes": core.adaxes_tokens.issued(),
            "adaxes_sessions": core.adaxes_sessions.issued(),
        }

    def set_tenant(self, mode: TenantMode) -> None:
        """Switch the DocSpace tenant: "active", "suspended" (404), "unpaid" (402) or
        "transferring" (403); the last three answer every DocSpace path with an empty body."""
        if mode not in TENANT_MODES:
            raise ValueError(f"tenant mode must be one of {sorted(TENANT_MODES)}, not {mode!r}")
        self._core.config.tenant = mode

    def clear_log(self) -> None:
        self._core.log.clear()
