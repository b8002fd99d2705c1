"""`python -m bulkgroups.sandbox`: the same command as `bulkgroups sandbox`."""

from bulkgroups.sandbox.cli import sandbox_command

sandbox_command(prog_name="bulkgroups sandbox")
