"""SandboxConfig: the live, mutable settings of one sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bulkgroups.sandbox.faults import Faults
from bulkgroups.sandbox.limits import Limits

# What a DocSpace tenant answers on every path: "active" serves the API; "suspended" is 404,
# "unpaid" 402, "transferring" (being moved or restored) 403; each with an empty body.
TenantMode = Literal["active", "suspended", "unpaid", "transferring"]
TENANT_MODES: dict[str, int] = {"active": 0, "suspended": 404, "unpaid": 402, "transferring": 403}


@dataclass
class SandboxConfig:
    """Read on every request: tests may replace `limits` or `faults` while the sandbox runs."""

    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)
    token_ttl_s: float = 1800.0  # DocSpace and Adaxes signed-in tokens
    session_ttl_s: float = 600.0  # Adaxes legacy sign-in sessions
    adaxes_operation_s: float = 0.0  # simulated duration of an Adaxes change
    adaxes_no_changes_flag: bool = False  # answer no-op changes with resultType 0 + noChanges
    # Older Adaxes versions stop a member list at 1000 objects unless `sizeLimit` says
    # otherwise; None lists every member (current versions, and the default here).
    adaxes_default_size_limit: int | None = None
    tenant: TenantMode = "active"
