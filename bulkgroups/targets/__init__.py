"""Target adapters: the credential headers each API wants, and the adapter for a job's kind."""

from __future__ import annotations

import ssl as ssl_module

from bulkgroups.model import TargetKind
from bulkgroups.secret import Secret
from bulkgroups.targets.adaxes import AdaxesTarget
from bulkgroups.targets.base import Auth, AuthRefused, StaticAuth, Target
from bulkgroups.targets.docspace import DocSpaceTarget
from bulkgroups.targets.signin import AdaxesSignIn, DocSpaceSignIn, Login, SignIn
from bulkgroups.targets.transport import Reply, Transport

__all__ = [
    "AdaxesTarget",
    "Auth",
    "AuthRefused",
    "DocSpaceTarget",
    "Login",
    "Reply",
    "SignIn",
    "StaticAuth",
    "Target",
    "Transport",
    "auth_for",
    "make_target",
    "sign_in_for",
]


def auth_for(kind: TargetKind, token: Secret | Auth) -> Auth:
    """DocSpace: an API key (`sk-...`) goes as `Bearer`, a personal access token bare;
    Adaxes: its own `Adm-Authorization` header. A sign-in (`sign_in_for`) is already an
    `Auth`, and is used as it is."""
    if not isinstance(token, Secret):
        return token
    value = token.reveal().strip()
    if kind is TargetKind.DOCSPACE:
        header = f"Bearer {value}" if value.startswith("sk-") else value
        return StaticAuth({"Authorization": header})
    if kind is TargetKind.ADAXES:
        return StaticAuth({"Adm-Authorization": value})
    raise ValueError(f"unknown target kind {kind!r}")


def sign_in_for(
    kind: TargetKind,
    *,
    base_url: str,
    login: Login,
    ssl: ssl_module.SSLContext | bool = True,
    timeout_s: float = 30.0,
) -> SignIn:
    """The `Auth` that signs in with a user name and password (DocSpace: a personal access
    token; Adaxes: the legacy session and token), keeps it fresh, and signs out when its
    `async with` ends."""
    if kind is TargetKind.DOCSPACE:
        return DocSpaceSignIn(base_url=base_url, login=login, ssl=ssl, timeout_s=timeout_s)
    if kind is TargetKind.ADAXES:
        return AdaxesSignIn(base_url=base_url, login=login, ssl=ssl, timeout_s=timeout_s)
    raise ValueError(f"unknown target kind {kind!r}")


def make_target(
    kind: TargetKind,
    transport: Transport,
    *,
    precheck: bool,
    protected: frozenset[str] = frozenset(),
    batch_size: int = 1,
    adm_wait_s: int | None = None,
    poll_limit_s: float = 300.0,
) -> Target:
    """`protected`: ids a `move_all` must not carry along (the row ends `invalid`).
    `batch_size`: members a DocSpace list request may carry (Adaxes has no list call).
    `adm_wait_s`, `poll_limit_s`: Adaxes asynchronous execution (see `running`)."""
    if kind is TargetKind.DOCSPACE:
        return DocSpaceTarget(
            transport, precheck=precheck, protected=protected, batch_size=batch_size
        )
    if kind is TargetKind.ADAXES:
        return AdaxesTarget(transport, precheck=precheck, protected=protected,
                            adm_wait_s=adm_wait_s, poll_limit_s=poll_limit_s)
    raise ValueError(f"unknown target kind {kind!r}")
