"""Adaxes operation results, changes to group membership, and asynchronous operations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from bulkgroups.sandbox.adaxes_state import AdObject

NOT_MEMBER = "The specified account name is not a member of the group."
ALREADY_MEMBER = "The specified account name is already a member of the group."
ACCESS_DENIED = "Access is denied."


def operation_result(
    result_type: int,
    dn: str,
    messages: list[dict[str, Any]] | None = None,
    exception: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "resultType": result_type,
        "innerMessages": messages or [],
        "exception": {"message": exception} if exception is not None else None,
        "actualObjectDN": dn,
        "extraInfo": extra or {},
    }


def _message(text: str, message_type: int, source: str = "") -> dict[str, Any]:
    return {"source": source, "text": text, "messageType": message_type, "innerMessages": []}


def apply_change(
    group: AdObject, member: AdObject, add: bool, no_changes_flag: bool
) -> dict[str, Any]:
    """Add or remove one member, as Adaxes would, and say how it went."""
    if group.denied:
        return operation_result(1, group.dn, exception=ACCESS_DENIED)
    if group.approval:
        text = f"The operation on '{group.dto['displayName']}' requires approval."
        return operation_result(2, group.dn, [_message(text, 4, "Approval")])
    present = member.dn in group.members
    if present == add:
        text = ALREADY_MEMBER if add else NOT_MEMBER
        if no_changes_flag:
            return operation_result(0, group.dn, [_message(text, 1)], extra={"noChanges": True})
        return operation_result(1, group.dn, exception=text)
    if add:
        group.members[member.dn] = None
    else:
        del group.members[member.dn]
    return operation_result(0, group.dn)


class Operations:
    """Changes answered with 202 and applied later; polled through runningOperations/{id}."""

    def __init__(self) -> None:
        self._results: dict[str, dict[str, Any] | None] = {}
        self._timers: set[asyncio.TimerHandle] = set()

    def start(self, delay_s: float, apply: Callable[[], dict[str, Any]]) -> str:
        op_id = str(uuid.uuid4())
        self._results[op_id] = None
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._timers.discard(handle)
            self._results[op_id] = apply()

        handle = loop.call_later(delay_s, run)
        self._timers.add(handle)
        return op_id

    def status(self, op_id: str) -> dict[str, Any] | None:
        """{"completed", "operationResult"}, or None for an unknown id."""
        if op_id not in self._results:
            return None
        result = self._results[op_id]
        return {"completed": result is not None, "operationResult": result}

    def cancel_all(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
