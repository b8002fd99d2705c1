"""Who is asking: the credential of a request, and whether it may do what it asks."""

from __future__ import annotations

from aiohttp import web

from bulkgroups.sandbox.core import Core
from bulkgroups.sandbox.replies import ax_error, ds_error

AX_UNAUTHENTICATED = "The provided authentication token is either expired or invalid."


def credential(request: web.Request, adaxes: bool) -> str:
    """The raw credential a request carries, or "" if none."""
    if adaxes:
        return request.headers.get("Adm-Authorization", "").strip()
    header = request.headers.get("Authorization")
    if header:
        header = header.strip()
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return header
    return request.cookies.get("asc_auth_key", "") if "Cookie" in request.headers else ""


def check_docspace(core: Core, cred: str, write: bool) -> web.Response | None:
    """None when allowed, else the 401/403 answer."""
    if not cred:
        return ds_error(401, "Unauthorized")
    scopes = core.docspace.api_keys.get(cred)
    if scopes is not None:
        need = "accounts:write" if write else "accounts:read"
        if need in scopes or "*" in scopes:
            return None
        return ds_error(403, f"Access denied: the API key lacks the scope {need}")
    if core.docspace_tokens.valid(cred):
        return None
    return ds_error(401, "Unauthorized")


def check_adaxes(core: Core, cred: str) -> web.Response | None:
    """None when allowed, else the documented 401 answer."""
    if cred and (cred in core.adaxes.tokens or core.adaxes_tokens.valid(cred)):
        return None
    return ax_error(401, AX_UNAUTHENTICATED, "unauthenticated")
