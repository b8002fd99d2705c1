"""The exit statuses of DESIGN.md, in one place: the runner decides them, the CLI exits
with them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable
from typing import Final, TypeVar

T = TypeVar("T")

EXIT_OK: Final = 0  # every row ended ok, noop or pending
EXIT_ROWS: Final = 1  # some rows failed, were invalid or went stale
EXIT_USAGE: Final = 2  # usage, job-file, state-file or results-file error: nothing sent
EXIT_REFUSED: Final = 3  # run refused or aborted
EXIT_SIGINT: Final = 130
EXIT_SIGTERM: Final = 143

# What a stop signal exits with.
SIGNAL_EXITS: Final = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}


class Interrupted(Exception):
    """A stop signal cut short work that had sent no change (reads only)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


async def unless_signalled(work: Awaitable[T]) -> T:
    """`work`'s result; a SIGINT or SIGTERM meanwhile cancels it at once and raises
    `Interrupted` with 130 or 143. For the steps before a run's own handlers (and for
    `export`), which only read: nothing is lost by stopping them mid-way, and click's own
    Ctrl-C handling would say "Aborted!" and exit 1."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    stopped: list[int] = []

    def on_signal(code: int) -> None:
        stopped.append(code)
        task.cancel()

    for sig, code in SIGNAL_EXITS.items():
        loop.add_signal_handler(sig, on_signal, code)
    try:
        return await task
    except asyncio.CancelledError:
        if not stopped:
            raise
        raise Interrupted(stopped[0]) from None
    finally:
        for sig in SIGNAL_EXITS:
            loop.remove_signal_handler(sig)
