"""A misbehaving HTTP server on loopback, for tests that need a server the sandbox will not be:
one that redirects, echoes the credential it got, sends 300 MB, stalls after its headers,
answers HTML, drops the connection, or sets cookies. Every request it gets is recorded.

Use:

    async with Hostile() as srv, Hostile("127.0.0.2") as other:
        srv.on("GET", "/api/2.0/group/*", redirect(307, other.url + "/steal"))
        srv.on("POST", "/api/2.0/authentication", sequence(empty(503), json(200, {...})))
        ...  # point a transport or a CLI job at srv.url
        assert other.requests == []                  # nothing reached the second host
        assert srv.requests[0].headers["Authorization"] == "Bearer sk-..."

API
- `Hostile(host="127.0.0.1")`: an aiohttp server on `host` and a free port; `async with` starts
  and stops it. Any 127.x.y.z works on Linux (the whole loopback range is local).
- `url`: `http://HOST:PORT`; `host`.
- `on(method, path, handler)`: `method` "*" for any; `path` exact, or ending in "*" for a
  prefix. The last matching route added wins. Unrouted requests get `fallback` (default 404
  with a JSON message; set `srv.fallback = handler` to change it).
- a handler is `async (request: web.Request, body: bytes) -> web.StreamResponse`; canned ones:
  `json(status, obj, headers=)`, `empty(status, headers=)`, `html(status, page=)`,
  `redirect(status, location)`, `echo_credentials(status, shape=)` (a message that repeats
  every credential header and the request body), `huge(total_bytes)` (a chunked body of that
  size; `srv.sent_bytes` counts what got out before the client let go), `stall(after_s,
  then=)` (headers, then nothing for `after_s` seconds), `reset()` (closes the connection
  without an answer), `set_cookie(name, value, then)`, `sequence(h1, h2, ...)` (one a call,
  the last repeats), `counted(handler)`.
- `requests`: list of `Received(method, path, query, headers, body, at)` in arrival order
  (headers as a case-insensitive multidict copy; `body` the raw bytes).
- `await wait_for(n, timeout_s=)`: until `n` requests arrived (an event, no polling).
- `job_target(url)`: an object `tests.support.write_job` accepts in place of a Sandbox, to
  point a CLI job at this server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace, TracebackType
from typing import Any, Self

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

Handler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
_SELF: web.AppKey[Hostile] = web.AppKey("hostile")

NGINX_504 = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]
    body: bytes
    at: float


@dataclass
class _Route:
    method: str
    path: str
    handler: Handler

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method):
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


@dataclass
class Hostile:
    host: str = "127.0.0.1"
    requests: list[Received] = field(default_factory=list)
    sent_bytes: int = 0
    fallback: Handler | None = None
    _routes: list[_Route] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def on(self, method: str, path: str, handler: Handler) -> None:
        self._routes.append(_Route(method.upper(), path, handler))

    async def wait_for(self, n: int, *, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.requests) < n:
                self._arrived.clear()
                await self._arrived.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        loop = asyncio.get_running_loop()
        self.requests.append(Received(request.method, request.path, request.query_string,
                                      CIMultiDictProxy(CIMultiDict(request.headers)), body,
                                      loop.time()))
        self._arrived.set()
        for route in reversed(self._routes):
            if route.matches(request.method, request.path):
                return await route.handler(request, body)
        if self.fallback is not None:
            return await self.fallback(request, body)
        return web.json_response({"message": "no such route"}, status=404)

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app[_SELF] = self
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def job_target(url: str) -> Any:
    """What `write_job` reads of a Sandbox (`base_url`, `adaxes_url`), for a hostile URL."""
    return SimpleNamespace(base_url=url, adaxes_url=url)


# -- canned handlers ------------------------------------------------------------------------


def json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Handler:
    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=status, body=orjson.dumps(obj), headers=headers,
                            content_type="application/json")
    return handle


def empty(status: int, headers: dict[str, str] | None = None) -> Handler:
    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=status, headers=headers)
    return handle


def html(status: int, page: str = NGINX_504) -> Handler:
    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=status, text=page, content_type="text/html")
    return handle


def redirect(status: int, location: str) -> Handler:
    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})
    return handle


_CREDENTIAL_HEADERS = ("Authorization", "Adm-Authorization", "Cookie")


def echo_credentials(status: int, shape: str = "docspace") -> Handler:
    """An error whose message repeats every credential header and the request body, in the
    API's error shape ("docspace": the envelope; "adaxes": message + innerError)."""

    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        got = " ".join(f"{h}: {request.headers[h]}" for h in _CREDENTIAL_HEADERS
                       if h in request.headers)
        said = f"bad credentials {got}; you sent {body.decode('utf-8', 'replace')}"
        obj: Any = (
            {"status": 1, "statusCode": status, "error": {"message": said, "stack": said}}
            if shape == "docspace"
            else {"message": said, "code": "x", "innerError": {"message": said}}
        )
        return web.Response(status=status, body=orjson.dumps(obj),
                            content_type="application/json")
    return handle


def huge(total_bytes: int, *, chunk_bytes: int = 256 * 1024) -> Handler:
    """A 200 with a chunked JSON-looking body of `total_bytes`; stops when the client goes."""

    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        srv = request.app[_SELF]
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b'{"pad":"' + b"x" * (chunk_bytes - 8)
        left = total_bytes
        try:
            while left > 0:
                piece = block[: min(left, chunk_bytes)]
                await resp.write(piece)
                srv.sent_bytes += len(piece)
                left -= len(piece)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return resp
        await resp.write_eof()
        return resp
    return handle


def stall(after_s: float, then: bytes = b'{"response": {}}') -> Handler:
    """Headers (with a Content-Length), then silence for `after_s`, then the body."""

    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.content_length = len(then)
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await asyncio.sleep(after_s)
            await resp.write(then)
        return resp
    return handle


def reset() -> Handler:
    """The connection closes before any answer."""

    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.close()
        raise ConnectionResetError("hostile reset")
    return handle


def set_cookie(name: str, value: str, then: Handler) -> Handler:
    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        resp = await then(request, body)
        resp.set_cookie(name, value, path="/")
        return resp
    return handle


def sequence(*handlers: Handler) -> Handler:
    """The n-th call uses the n-th handler; the last one repeats."""
    calls = 0

    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        nonlocal calls
        chosen = handlers[min(calls, len(handlers) - 1)]
        calls += 1
        return await chosen(request, body)
    return handle


def docspace_group(gid: str, members: list[str]) -> dict[str, Any]:
    """The DocSpace envelope of a group with its listed members."""
    return {
        "response": {"id": gid, "name": "g", "category": "00000000-0000-0000-0000-000000000000",
                     "isLDAP": False, "isSystem": False, "shared": False,
                     "membersCount": len(members),
                     "members": [{"id": m, "displayName": m} for m in members]},
        "count": 1, "links": [], "status": 0, "statusCode": 200,
    }


def adaxes_ok() -> dict[str, Any]:
    """An Adaxes operation result that succeeded."""
    return {"resultType": 0, "innerMessages": [], "exception": None,
            "actualObjectDN": "CN=x", "extraInfo": {}}
