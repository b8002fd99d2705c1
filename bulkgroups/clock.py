"""Where a row's time goes: waiting (for a batch to fill, for the pacer's turn, a pause) or
the server's answer. The engine gives each row's task its own `RowClock` in a context
variable; the batcher and the pacer, running in that task, add what they waited. Pure: no I/O.

A context variable rather than a parameter because the wait happens deep below the `Target`
interface (adapter, batcher, transport, pacer) and none of those signatures should change for
a figure in the summary; a task copies the context it is created in, so each row's clock is
its own."""

from __future__ import annotations

from contextvars import ContextVar


class RowClock:
    __slots__ = ("wait_s",)

    def __init__(self) -> None:
        self.wait_s = 0.0


_current: ContextVar[RowClock | None] = ContextVar("bulkgroups_row_clock", default=None)


def start_row() -> RowClock:
    """A fresh clock for the row run by the current task."""
    clock = RowClock()
    _current.set(clock)
    return clock


def current() -> RowClock | None:
    return _current.get()


def waited(seconds: float) -> None:
    """The current row waited `seconds` before a request of it could go (no-op outside a row)."""
    clock = _current.get()
    if clock is not None and seconds > 0:
        clock.wait_s += seconds
