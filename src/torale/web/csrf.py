"""CSRF: every state-changing request from a page carries a token the server checks, and none
may come from another origin.

Signed in, the token is an HMAC of the session id (so it is bound to the session and changes
with it); signed out (the sign-in form), an HMAC of a random pre-session cookie. Forms send it
as the `csrf_token` field, htmx as the `X-CSRF-Token` header (set once on <body> by hx-headers).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request

from torale.auth.sessions import COOKIE_NAME as SESSION_COOKIE
from torale.errors import PermissionDeniedError
from torale.state import app_state

PRE_SESSION_COOKIE = "torale_csrf"
FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefusedError(PermissionDeniedError):
    pass


def token_for(secret: str, hashing_key: bytes) -> str:
    return hmac.new(hashing_key, b"csrf:" + secret.encode(), hashlib.sha256).hexdigest()


def new_pre_session_secret() -> str:
    return secrets.token_urlsafe(32)


def expected_token(request: Request) -> str | None:
    """The token this browser's forms must carry, from its session or pre-session cookie."""
    key = app_state(request).hashing_key
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        return token_for(session, key)
    pre = request.cookies.get(PRE_SESSION_COOKIE)
    return token_for("pre:" + pre, key) if pre else None


def _same_origin(request: Request, origin: str) -> bool:
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    public = app_state(request).settings.public_base_url
    return origin in (own, public)


async def check(request: Request) -> None:
    """Refuse (403) a state-changing request from another origin or without the right token."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfRefusedError("This form was sent from another site; it was refused")
    origin = request.headers.get("origin")
    if origin and not _same_origin(request, origin):
        raise CsrfRefusedError("This form was sent from another site; it was refused")
    expected = expected_token(request)
    sent = request.headers.get(HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRefusedError(
            "This form expired or did not come from this site; reload the page and try again"
        )
