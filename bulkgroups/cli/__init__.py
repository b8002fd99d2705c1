"""The command line: thin click commands that parse, call one function and print."""

from bulkgroups.cli.main import main

__all__ = ["main"]
