"""Sign in with the identity provider (`auth/oidc.py`), when one is configured.

`/signin/oidc` starts a flow: a new state, nonce and PKCE verifier, kept in a short-lived
cookie (`FLOW_COOKIE`, HttpOnly, SameSite=Lax, only sent to `/signin/oidc…`) signed with the
server's secret, and the browser goes to the provider. `/signin/oidc/callback` checks that the
provider's answer carries this browser's state, exchanges the code, verifies the ID token, and
then, in one unit of work, finds or makes the user exactly as `POST /auth/sync-user` does
(`auth.service.sync_user_from_claims`, the role claim too) and starts the same session as the
other ways of signing in. Every failure is the sign-in page with what happened, and writes
nothing; the flow cookie is dropped on every answer, so a callback works once per browser.

A cookie rather than a table: nothing to sweep, nothing written before the person signs in, and
it works across several server processes. Its contents are no secret from the browser that
holds them (the verifier proves that this browser asked for the code); the signature keeps
anyone else from choosing them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from torale.auth import service
from torale.auth.oidc import (
    CodeRefusedError,
    Flow,
    InvalidIdTokenError,
    OidcError,
    OidcProvider,
    ProviderUnavailableError,
)
from torale.config import Settings
from torale.db.database import session_scope
from torale.errors import ConflictError, NotFoundError
from torale.inputs import Text
from torale.state import app_state
from torale.web.routing import WebRoute
from torale.web.signin import safe_next, signed_in, signin_page, start_session
from torale.web.viewer import current_viewer

logger = logging.getLogger("torale.web")
router = APIRouter(route_class=WebRoute, include_in_schema=False)

START_PATH = "/signin/oidc"
CALLBACK_PATH = "/signin/oidc/callback"
FLOW_COOKIE = "torale_oidc"
# How long a person may take at the provider before the flow expires.
FLOW_SECONDS = 600
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
MAX_TARGET = 2000  # characters of the `next` path kept in the flow cookie


class _DeactivatedError(Exception):
    """The account is deactivated: nothing the sign-in wrote is kept."""


def callback_url(settings: Settings) -> str:
    """The redirect URI, as registered at the provider."""
    return settings.public_base_url + CALLBACK_PATH


def _signature(payload: str, hashing_key: bytes) -> str:
    return hmac.new(hashing_key, b"oidc-flow:" + payload.encode(), hashlib.sha256).hexdigest()


def seal(flow: Flow, target: str, hashing_key: bytes, *, now: float | None = None) -> str:
    """The flow cookie's value: the flow, where to go after, and its expiry, signed."""
    data = {
        "state": flow.state,
        "nonce": flow.nonce,
        "verifier": flow.code_verifier,
        "next": target,
        "expires": int((now or time.time()) + FLOW_SECONDS),
    }
    payload = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{payload}.{_signature(payload, hashing_key)}"


def unseal(value: str | None, hashing_key: bytes) -> tuple[Flow, str] | None:
    """The flow and target of a cookie this server signed and that has not expired."""
    if not value or value.count(".") != 1:
        return None
    payload, signature = value.split(".")
    if not hmac.compare_digest(signature, _signature(payload, hashing_key)):
        return None
    try:
        padded = payload + "=" * (-len(payload) % 4)
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
        flow = Flow(str(data["state"]), str(data["nonce"]), str(data["verifier"]))
        target, expires = str(data["next"]), float(data["expires"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires <= time.time():
        return None
    return flow, target


def _provider(request: Request) -> OidcProvider:
    provider = app_state(request).oidc
    if provider is None:
        raise NotFoundError("There is no such page.")  # no provider configured
    return provider


def _refused(request: Request, message: str, status_code: int) -> Response:
    response = signin_page(request, error=message, status_code=status_code)
    response.delete_cookie(FLOW_COOKIE, path=START_PATH)
    return response


@router.get(START_PATH)
async def start(request: Request, next: Text | None = None) -> Response:
    provider = _provider(request)
    if await current_viewer(request):
        return RedirectResponse(safe_next(next), status_code=303)
    state = app_state(request)
    name = state.settings.oidc_display_name
    flow = Flow.new()
    try:
        url = await provider.authorization_url(flow, redirect_uri=callback_url(state.settings))
    except OidcError as exc:
        logger.warning("sign-in with the identity provider could not start: %s", exc)
        return _refused(request, _unreachable(name), 503)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        # A target too long for a cookie is dropped, not the sign-in.
        seal(flow, next if next and len(next) <= MAX_TARGET else "/", state.hashing_key),
        max_age=FLOW_SECONDS,
        httponly=True,
        samesite="lax",  # sent on the provider's redirect back (a top-level GET)
        secure=state.settings.secure_cookies,
        path=START_PATH,
    )
    return response


@router.get(CALLBACK_PATH)
async def callback(
    request: Request,
    code: Text | None = None,
    state: Text | None = None,
    error: Text | None = None,
) -> Response:
    provider = _provider(request)
    app = app_state(request)
    name = app.settings.oidc_display_name
    sealed = unseal(request.cookies.get(FLOW_COOKIE), app.hashing_key)
    if sealed is None and await current_viewer(request):
        # Signed in already (the back button, a second tab, someone else's link): nothing to
        # do, and the session stays.
        return RedirectResponse("/", status_code=303)
    if error:
        # The provider did not sign the person in; nothing to check, nothing granted.
        return _refused(request, _provider_error(name, error), 401)
    if sealed is None:
        return _refused(
            request,
            "This sign-in expired or was started in another browser. Try again.",
            400,
        )
    flow, target = sealed
    if not state or not hmac.compare_digest(state.encode(), flow.state.encode()):
        return _refused(
            request,
            "This sign-in answer does not belong to the sign-in started in this browser. "
            "Try again.",
            400,
        )
    if not code:
        return _refused(request, f"{name} sent no sign-in code. Try again.", 400)
    try:
        claims = await provider.sign_in(
            code=code, flow=flow, redirect_uri=callback_url(app.settings)
        )
    except ProviderUnavailableError as exc:
        logger.warning("sign-in with the identity provider failed: %s", exc)
        return _refused(request, _unreachable(name), 503)
    except CodeRefusedError as exc:
        logger.info("sign-in with the identity provider refused: %s", exc)
        return _refused(
            request,
            f"{name} did not accept this sign-in (it may have been used already). Try again.",
            401,
        )
    except InvalidIdTokenError as exc:
        logger.warning("sign-in with the identity provider refused: %s", exc)
        return _refused(request, f"The answer from {name} could not be verified. Try again.", 401)
    if service.verified_email(claims) is None:
        return _refused(
            request,
            f"{name} has not verified your email address. Verify it there, then sign in again.",
            403,
        )
    try:
        async with session_scope(app.sessions, app.write_lock) as session:
            user, _ = await service.sync_user_from_claims(session, claims=claims)
            await service.apply_role_claim(
                session, user=user, claims=claims, path=app.settings.jwt_role_claim
            )
            if not user.is_active:
                raise _DeactivatedError
            token = await start_session(request, session, user.id)
    except _DeactivatedError:
        return _refused(
            request, "This account is deactivated. Ask the administrator of this server.", 403
        )
    except ConflictError as exc:
        return _refused(
            request,
            f"{exc.detail}. Sign in with an API key, or ask the administrator of this server.",
            409,
        )
    response = signed_in(request, token, target)
    response.delete_cookie(FLOW_COOKIE, path=START_PATH)
    return response


def _unreachable(name: str) -> str:
    return f"{name} cannot be reached right now. Try again shortly, or sign in with an API key."


def _provider_error(name: str, error: str) -> str:
    if error == "access_denied":
        return f"Signing in at {name} was cancelled."
    code = error if _ERROR_CODE.fullmatch(error) else "an error"
    return f"{name} did not sign you in ({code}). Try again."
