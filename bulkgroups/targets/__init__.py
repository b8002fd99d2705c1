"""Target adapters: the credential headers each API wants, and the adapter for a job's kind."""

from __future__ import annotations

from bulkgroups.model import TargetKind
from bulkgroups.secret import Secret
from bulkgroups.targets.adaxes import AdaxesTarget
from bulkgroups.targets.base import Auth, AuthRefused, StaticAuth, Target
from bulkgroups.targets.docspace import DocSpaceTarget
from bulkgroups.targets.transport import Reply, Transport

__all__ = [
    "AdaxesTarget",
    "Auth",
    "AuthRefused",
    "DocSpaceTarget",
    "Reply",
    "StaticAuth",
    "Target",
    "Transport",
    "auth_for",
    "make_target",
]


def auth_for(kind: TargetKind, token: Secret) -> StaticAuth:
    """DocSpace: an API key (`sk-...`) goes as `Bearer`, a personal access token bare;
    Adaxes: its own `Adm-Authorization` header."""
    value = token.reveal().strip()
    if kind is TargetKind.DOCSPACE:
        header = f"Bearer {value}" if value.startswith("sk-") else value
        return StaticAuth({"Authorization": header})
    if kind is TargetKind.ADAXES:
        return StaticAuth({"Adm-Authorization": value})
    raise ValueError(f"unknown target kind {kind!r}")


def make_target(
    kind: TargetKind,
    transport: Transport,
    *,
    precheck: bool,
    protected: frozenset[str] = frozenset(),
    batch_size: int = 1,
) -> Target:
    """`protected`: ids a `move_all` must not carry along (the row ends `invalid`).
    `batch_size`: members a DocSpace list request may carry (Adaxes has no list call)."""
    if kind is TargetKind.DOCSPACE:
        return DocSpaceTarget(
            transport, precheck=precheck, protected=protected, batch_size=batch_size
        )
    if kind is TargetKind.ADAXES:
        return AdaxesTarget(transport, precheck=precheck, protected=protected)
    raise ValueError(f"unknown target kind {kind!r}")
