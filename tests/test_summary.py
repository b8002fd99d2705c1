"""The run summary says what a stopped run sent even when no row had finished."""

from __future__ import annotations

from pathlib import Path

from bulkgroups.cli import console
from bulkgroups.results.stats import Tally
from bulkgroups.runner import RunSummary


def _printed(summary: RunSummary) -> str:
    with console.out.capture() as captured:
        console.print_run(summary, quiet=False)
    return captured.get()


def test_a_run_stopped_before_any_answer_says_what_it_sent() -> None:
    stopped = RunSummary(code=143, results=Path("r.jsonl"), tally=Tally(), elapsed_s=1.0,
                         stopped="terminated (SIGTERM)", requests_sent=7)
    text = _printed(stopped)
    assert "no row answered yet (7 requests sent)" in text
    assert "no requests" not in text
    idle = RunSummary(code=0, results=Path("r.jsonl"), tally=Tally(), elapsed_s=0.1)
    assert "no requests" in _printed(idle)
