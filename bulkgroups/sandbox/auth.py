"""Who is asking: the credential of a request, and whether it may do what it asks."""

from __future__ import annotations

from aiohttp import web

from bulkgroups.sandbox.core import Core
from bulkgroups.sandbox.replies import ax_error, empty

AX_UNAUTHENTICATED = "The provided authentication token is either expired or invalid."
API_KEY_PREFIX = "Bearer sk-"


def credential(request: web.Request, adaxes: bool) -> str:
    """The raw credential a request carries, or "" if none, read the way the server does.

    DocSpace (BaseStartup's scheme selector): only a header starting with exactly `Bearer `
    whose token starts with `sk-` goes to the API-key handler, which keeps the `sk-` token.
    Anything else goes to the cookie handler, which prefers the `asc_auth_key` cookie to the
    header and cuts a `Bearer ` off either. So `sk-...` or `bearer sk-...` stays as it is and
    matches no key."""
    if adaxes:
        return request.headers.get("Adm-Authorization", "").strip()
    header = request.headers.get("Authorization", "")
    if header.startswith(API_KEY_PREFIX):
        return header[len("Bearer ") :].strip()
    value = request.cookies.get("asc_auth_key") or header
    value = value.strip()
    if "Bearer" in value:
        value = value[len("Bearer ") :]
    return value


def is_api_key(request: web.Request) -> bool:
    return request.headers.get("Authorization", "").startswith(API_KEY_PREFIX)


def check_docspace(core: Core, request: web.Request, cred: str, write: bool) -> web.Response | None:
    """None when allowed, else the auth layer's 401/403, which have no body."""
    if not cred:
        return empty(401)
    if is_api_key(request):
        scopes = core.docspace.api_keys.get(cred)
        if scopes is None:
            return empty(401)
        need = ("accounts:write", "*:write") if write else ("accounts:read", "*:read", "*:write")
        # A key created with no scopes has them all.
        if not scopes or "*" in scopes or any(n in scopes for n in need):
            return None
        return empty(403)
    if core.docspace_tokens.valid(cred):
        return None
    return empty(401)


def check_adaxes(core: Core, cred: str) -> web.Response | None:
    """None when allowed, else the documented 401 answer."""
    if cred and (cred in core.adaxes.tokens or core.adaxes_tokens.valid(cred)):
        return None
    return ax_error(401, AX_UNAUTHENTICATED, "unauthenticated")
