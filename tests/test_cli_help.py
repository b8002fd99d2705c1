"""The command line explains itself: every command and every option has help text."""

from __future__ import annotations

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
