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


def ds_validation(errors: dict[str, list[str]]) -> web.Response:
    """ASP.NET model binding's 400: ValidationProblemDetails in the envelope, no error.message."""
    problem = {
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": errors,
    }
    return json_response({"response": problem, "status": 1, "statusCode": 400}, 400)


def empty(status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    """An answer with no body at all: what DocSpace's auth layer, limiter and tenant checks send."""
    return web.Response(status=status, headers=headers)


_NGINX_TITLES = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def nginx_page(status: int) -> web.Response:
    """The HTML page nginx in front of DocSpace answers when the upstream fails or is slow."""
    title = _NGINX_TITLES.get(status, f"{status} Error")
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")


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
