"""Shared fixtures: a seeded state, a running sandbox on loopback, and an HTTP client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from bulkgroups.sandbox import Sandbox, SandboxConfig, make_state

StartSandbox = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
def state() -> dict[str, Any]:
    """The default seeded state (make_state())."""
    return make_state()


@pytest.fixture
async def sandbox(state: dict[str, Any]) -> AsyncIterator[Sandbox]:
    """A running sandbox with the default config, serving `state`."""
    async with Sandbox(state) as sb:
        yield sb


@pytest.fixture
async def start_sandbox() -> AsyncIterator[StartSandbox]:
    """Start extra sandboxes with their own state or config; all are stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            state: dict[str, Any] | None = None, config: SandboxConfig | None = None
        ) -> Sandbox:
            return await stack.enter_async_context(
                Sandbox(make_state() if state is None else state, config=config)
            )

        yield start


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """The session as the tool builds it: orjson bodies, a connection cap."""
    async with aiohttp.ClientSession(
        json_serialize_bytes=orjson.dumps, connector=aiohttp.TCPConnector(limit=16)
    ) as session:
        yield session


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def ds_auth() -> dict[str, str]:
    """DocSpace headers with the seeded API key (both scopes)."""
    return {"Authorization": "Bearer sk-test-key"}


@pytest.fixture
def ax_auth() -> dict[str, str]:
    """Adaxes headers with the seeded long-lived token."""
    return {"Adm-Authorization": "adm-test-token"}
