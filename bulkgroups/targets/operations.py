"""Adaxes asynchronous execution: a change sent with `Adm-Wait: N` that takes longer than N
seconds is answered 202 with an operation id. `GET /api/runningOperations/{id}` is then asked,
with growing pauses, until it says `completed`; its `operationResult` is read exactly like
a direct answer would be.

The polls go through the run's transport, so they are paced and retried like any request.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from bulkgroups.http.transport import Reply, Transport
from bulkgroups.targets.members import Trace, reason

POLL_FIRST_S = 0.2
POLL_MAX_S = 5.0
# How long a row waits for its operation, as a multiple of the job's timeout_s; after that
# the row fails (a resume sends it again, and the refusal check settles what happened).
POLL_LIMIT_FACTOR = 10.0


def operation_id(body: Any) -> str | None:
    """The id a 202 carries: a bare JSON string, or an object's `id` / `operationId`."""
    if isinstance(body, str) and body.strip():
        return body.strip()
    if isinstance(body, dict):
        for key in ("id", "operationId"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


async def wait_for_operation(
    t: Transport, accepted: Reply, trace: Trace, *, limit_s: float
) -> dict[str, Any] | str:
    """The completed operation's result, or why the row cannot have one (a failure text)."""
    op = operation_id(accepted.body)
    if op is None:
        return "HTTP 202 without an operation id"
    path = "/api/runningOperations/" + quote(op, safe="")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    delay = POLL_FIRST_S
    while True:
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        reply = trace.see(await t.send("GET", path))
        if not reply.ok:
            return f"cannot read operation {op}: {reason(reply)}"
        status = reply.body if isinstance(reply.body, dict) else None
        if status is None:
            return f"unexpected answer reading operation {op}"
        if status.get("completed") is True:
            result = status.get("operationResult")
            if isinstance(result, dict):
                return result
            return f"operation {op} completed without an operation result"
        if loop.time() >= deadline:
            return f"operation {op} still running after {limit_s:g} s"
        delay = min(delay * 2, POLL_MAX_S)
