"""A faithful local emulator of the DocSpace and Adaxes group APIs, for tests and the demo.

It follows the vendor facts in the project's API notes: envelopes, status codes, quirks,
DocSpace's rate limits, Adaxes operation results, sign-in flows; plus fault injection and a
request log.
"""

from bulkgroups.sandbox.config import SandboxConfig
from bulkgroups.sandbox.faults import Faults
from bulkgroups.sandbox.limits import Limits
from bulkgroups.sandbox.log import LogEntry
from bulkgroups.sandbox.seed import make_state
from bulkgroups.sandbox.server import Sandbox
from bulkgroups.sandbox.state import StateError

__all__ = [
    "Faults",
    "Limits",
    "LogEntry",
    "Sandbox",
    "SandboxConfig",
    "StateError",
    "make_state",
]
