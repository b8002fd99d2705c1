"""Answers in each API's own shape, fast JSON, and the dropped connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

_AX_CODES = {
    400: "badRequest",
    401: "unauthenticated",
    403: "forbidden",
    404: "notFound",
    405: "methodNotAllowed",
    429: "tooManyRequests",
    500: "internalServerError",
    502: "badGateway",
    503: "serviceUnavailable",
}


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def ds_ok(payload: Any, status: int = 200, total: int | None = None) -> web.Response:
    """DocSpace's success envelope."""
    envelope: dict[str, Any] = {
        "response": payload,
        "count": len(payload) if isinstance(payload, list) else 1,
    }
    if total is not None:
        envelope["total"] = total
    envelope.update(links=[], status=0, statusCode=status)
    return json_response(envelope, status)


def ds_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """DocSpace's error envelope."""
    body = {"status": 1, "statusCode": status, "error": {"message": message}}
    return json_response(body, status, headers)


def ax_error(
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """Adaxes's error body: {"message", "code", ...extra}."""
    body = {"message": message, "code": code or _AX_CODES.get(status, "error"), **extra}
    return json_response(body, status, headers)


def ax_bad_request(model_state: dict[str, list[str]]) -> web.Response:
    return ax_error(400, "The request is invalid.", modelState=model_state)


def api_error(
    adaxes: bool, status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error in the shape of the API the path belongs to."""
    return (
        ax_error(status, message, headers=headers) if adaxes else ds_error(status, message, headers)
    )


class Dropped(web.StreamResponse):
    """Returned by a handler to close the connection without writing any answer.

    aiohttp calls `prepare()` to send the headers; closing the transport there and raising
    ConnectionResetError is the path aiohttp takes for a client that went away: it stops
    serving that connection quietly (no 500, no log line), and the client sees the socket close
    with no response (aiohttp client: ServerDisconnectedError).
    """

    async def prepare(self, request: web.BaseRequest) -> None:
        transport = request.transport
        if transport is not None:
            transport.close()
        raise ConnectionResetError("sandbox dropped the connection")
