"""One way out of every command: an error becomes one line on stderr and its exit status.

`fail` and `warn` are the only ways a command speaks of trouble; `exit_on_error` maps the
domain's exceptions to exit statuses, and the `bulkgroups` group runs every command inside
it, so a command only catches what it words differently."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

from bulkgroups.cli import console
from bulkgroups.exits import EXIT_REFUSED, EXIT_USAGE, Interrupted
from bulkgroups.http.auth import AuthRefused
from bulkgroups.job import JobError
from bulkgroups.planning.planfile import PlanFileError
from bulkgroups.results.file import ResultsFileError
from bulkgroups.rows.readers import InputError
from bulkgroups.runner import RunRefused


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `bulkgroups: MESSAGE` on stderr and exit with `code`."""
    console.err.print(f"bulkgroups: {message}", markup=False)
    sys.exit(code)


def warn(message: str) -> None:
    console.err.print(f"bulkgroups: warning: {message}", markup=False)


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """The exceptions that end a command, as DESIGN.md's exit statuses: a job-file or
    input error is 2 (nothing sent), a refusal 3 or its own code."""
    try:
        yield
    except (JobError, InputError, PlanFileError, ResultsFileError) as exc:
        fail(str(exc), EXIT_USAGE)
    except RunRefused as exc:
        fail(str(exc), exc.code)
    except AuthRefused as exc:
        fail(str(exc), EXIT_REFUSED)
    except Interrupted as exc:  # reads only (`unless_signalled`): no change was sent
        fail("interrupted: nothing was sent", exc.code)
