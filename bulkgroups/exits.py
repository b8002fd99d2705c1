"""The exit statuses of DESIGN.md, in one place: the runner decides them, the CLI exits
with them."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0  # every row ended ok, noop or pending
EXIT_ROWS: Final = 1  # some rows failed or were invalid
EXIT_USAGE: Final = 2  # usage, job-file, state-file or results-file error: nothing sent
EXIT_REFUSED: Final = 3  # run refused or aborted
EXIT_SIGINT: Final = 130
EXIT_SIGTERM: Final = 143
