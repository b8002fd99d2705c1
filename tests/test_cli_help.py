"""The command line explains itself: every command and every option has help text."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bulkgroups.cli.main import cli

DESIGN_COMMANDS = {"run", "resume", "validate", "plan", "undo", "report", "schedule", "sandbox"}


def test_every_documented_command_exists() -> None:
    """The commands DESIGN.md names are all there."""
    assert set(cli.commands) >= DESIGN_COMMANDS


@pytest.mark.parametrize("name", sorted(DESIGN_COMMANDS))
def test_every_command_and_option_has_help(name: str) -> None:
    """`bulkgroups NAME --help` works, and each option says what it does."""
    command = cli.commands[name]
    assert command.help and len(command.help.strip()) > 20
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="bulkgroups")
    assert result.exit_code == 0
    assert "Usage: bulkgroups " + name in result.output.replace("\n", " ")


def test_top_level_help_lists_exit_statuses() -> None:
    """`bulkgroups --help` lists the commands and the exit statuses."""
    result = CliRunner().invoke(cli, ["--help"], prog_name="bulkgroups")
    assert result.exit_code == 0
    assert "Exit status" in result.output
    for name in DESIGN_COMMANDS:
        assert name in result.output


def test_top_level_help_shows_each_command_on_one_whole_line() -> None:
    """`bulkgroups --help` lists every command with a whole line, never cut with '...'."""
    result = CliRunner().invoke(cli, ["--help"], prog_name="bulkgroups", terminal_width=80)
    assert result.exit_code == 0
    listed = result.output.split("Commands:", 1)[1].strip().splitlines()
    assert sorted(line.split()[0] for line in listed) == sorted(cli.commands)
    for line in listed:
        assert not line.rstrip().endswith("..."), line
        assert line.rstrip().endswith("."), line


@pytest.mark.parametrize("args", [
    ("run", "missing.toml"), ("run", "missing.toml", "--dry-run"), ("validate", "missing.toml"),
    ("plan", "missing.toml"), ("schedule", "missing.toml", "--cron", "@daily"),
])
def test_every_command_exits_2_with_one_line_for_a_job_file_error(args: tuple[str, ...]
                                                                  ) -> None:
    """The one error-to-exit handler: a job-file error is one line on stderr and exit 2."""
    result = CliRunner().invoke(cli, list(args), prog_name="bulkgroups")
    assert result.exit_code == 2, result.output
    assert result.stderr == "bulkgroups: missing.toml: no such file\n"
    assert result.stdout == ""


def test_exit_codes_are_defined_once() -> None:
    """The runner and the CLI use the codes of bulkgroups.exits (DESIGN.md's table)."""
    from bulkgroups import exits, runner

    assert (exits.EXIT_OK, exits.EXIT_ROWS, exits.EXIT_USAGE, exits.EXIT_REFUSED,
            exits.EXIT_SIGINT, exits.EXIT_SIGTERM) == (0, 1, 2, 3, 130, 143)
    assert runner.EXIT_REFUSED is exits.EXIT_REFUSED


def test_plural() -> None:
    from bulkgroups.cli.console import plural

    assert [plural(n, "failed row") for n in (0, 1, 2, 1000)] == [
        "0 failed rows", "1 failed row", "2 failed rows", "1,000 failed rows"]


def test_paths_are_shown_relative_to_the_current_folder(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One way for paths in messages: as typed, relative to the current folder when under
    it (a job's own paths are absolute inside), absolute when outside it."""
    from bulkgroups.display import shown
    from bulkgroups.job import JobError, load_job

    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "j.toml"
    job.write_text('[job]\nname = "j"\n[target]\nkind = "docspace"\nsandbox = true\n'
                   '[input]\npath = "gone.csv"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert shown(tmp_path / "jobs" / "x.csv") == str(Path("jobs") / "x.csv")
    assert shown(Path("rel/x.csv")) == str(Path("rel/x.csv"))
    assert shown(tmp_path.parent / "elsewhere") == str(tmp_path.parent / "elsewhere")
    with pytest.raises(JobError) as info:
        load_job(job.absolute())
    assert str(info.value).startswith(str(Path("jobs") / "j.toml") + ": [input] path: ")
    assert str(tmp_path) not in str(info.value)


def test_summary_lists_statuses_in_status_order(capsys: pytest.CaptureFixture[str]) -> None:
    """The summary's rows follow `Status` (model.py), the one list of statuses, and the
    runner itself printed nothing: the CLI prints the summary it returns."""
    from bulkgroups.cli.console import print_run
    from bulkgroups.model import Outcome, Status
    from bulkgroups.results.stats import Tally
    from bulkgroups.runner import RunSummary

    tally = Tally()
    for i, status in enumerate([Status.FAILED, Status.OK, Status.OK]):
        tally.add(Outcome(row=i + 1, line=i + 2, key="k", op="remove", group="g", member="m",
                          to_group="", status=status, http_status=200, attempts=1,
                          error=None, elapsed_ms=5.0, finished_at="t"))
    print_run(RunSummary(code=1, results=Path("r.jsonl"), tally=tally, elapsed_s=1.0,
                         already=1), quiet=False)
    out = capsys.readouterr().out
    at = [out.index(f" {s.value} ") for s in Status]
    assert at == sorted(at)
    assert "1 row was already finished before this run and was skipped" in out
    assert "to finish the remaining rows: bulkgroups resume r.jsonl" in out
