"""Signing in and out: with an API key (exchanged for a session), with a one-time link, with
the identity provider (`web/oidc.py`, which makes its session here too), and sign out here or
everywhere. `/` opens the tasks page when signed in, this page otherwise."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from torale.auth import sessions, signin_links
from torale.auth.authenticate import client_address
from torale.auth.keys import looks_like_api_key
from torale.auth.lookup import AuthenticatedUser
from torale.db.database import session_scope
from torale.errors import AuthenticationError, PermissionDeniedError
from torale.inputs import Text
from torale.state import app_state
from torale.web import csrf
from torale.web.rendering import render
from torale.web.routing import WebRoute
from torale.web.viewer import ViewerDep, current_viewer

router = APIRouter(route_class=WebRoute, include_in_schema=False)


async def user_for_api_key(request: Request, key: str) -> AuthenticatedUser | None:
    """The active owner of a valid, unrevoked API key, through the API's one authentication
    path (so a wrong key counts against the address's failure budget, and past it the form
    answers 429 like the API); None for a key that does not sign in."""
    key = key.strip()
    if not looks_like_api_key(key):
        return None
    authenticator = app_state(request).authenticator
    try:
        admission = await authenticator.authenticate(key, client_address(request.scope))
    except (AuthenticationError, PermissionDeniedError):
        return None
    return admission.user


def safe_next(target: str | None) -> str:
    """Only a path on this site (never `//host` or a full URL)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/tasks"


async def start_session(request: Request, session: AsyncSession, user_id: uuid.UUID) -> str:
    """A new browser session for the user, in the caller's unit of work (every way of signing
    in makes it here); returns its id for `signed_in`."""
    state = app_state(request)
    policy = sessions.SessionPolicy.from_settings(state.settings)
    await sessions.sweep(session, policy=policy)
    return await sessions.start(
        session, user_id=user_id, hashing_key=state.hashing_key, policy=policy
    )


def signed_in(request: Request, token: str, target: str) -> Response:
    """The answer to a sign-in: the session cookie, and on to `target` (a path on this site)."""
    policy = sessions.SessionPolicy.from_settings(app_state(request).settings)
    response = RedirectResponse(safe_next(target), status_code=303)
    response.set_cookie(**policy.cookie(token))  # type: ignore[arg-type]
    response.delete_cookie(csrf.PRE_SESSION_COOKIE, path="/")
    return response


async def _signed_in(request: Request, user_id: uuid.UUID, target: str) -> Response:
    state = app_state(request)
    async with session_scope(state.sessions, state.write_lock) as session:
        token = await start_session(request, session, user_id)
    return signed_in(request, token, target)


def signin_page(
    request: Request, *, error: str | None = None, status_code: int = 200, target: str = ""
) -> Response:
    """The sign-in form, with a pre-session cookie for its CSRF token."""
    state = app_state(request)
    pre = request.cookies.get(csrf.PRE_SESSION_COOKIE)
    fresh = pre is None
    if pre is None:
        pre = csrf.new_pre_session_secret()
    response = render(
        request,
        "signin.html",
        {
            "error": error,
            "next": target,
            "csrf_token": csrf.token_for("pre:" + pre, state.hashing_key),
            "title": "Sign in",
            "provider": state.settings.oidc_display_name if state.oidc else None,
        },
        status_code=status_code,
    )
    if sessions.COOKIE_NAME in request.cookies:
        # A session cookie here is a dead one (live sessions never see this page): drop it, so
        # that the form's token (from the pre-session cookie) is the one checked.
        response.delete_cookie(sessions.COOKIE_NAME, path="/")
    if fresh:
        response.set_cookie(
            csrf.PRE_SESSION_COOKIE,
            pre,
            httponly=True,
            samesite="lax",
            secure=state.settings.secure_cookies,
            path="/",
        )
    return response


@router.get("/")
async def home(request: Request) -> Response:
    viewer = await current_viewer(request)
    return RedirectResponse("/tasks" if viewer else "/signin", status_code=303)


@router.get("/signin")
async def signin(request: Request, token: Text | None = None, next: Text | None = None) -> Response:
    if token:
        state = app_state(request)
        async with session_scope(state.sessions, state.write_lock) as session:
            user_id = await signin_links.redeem(session, token=token, hashing_key=state.hashing_key)
        if user_id is None:
            return signin_page(
                request,
                error="This sign-in link was used already or has expired. Ask for a new one "
                "(torale signin-link --email you@example.com) or sign in with an API key.",
                status_code=400,
            )
        return await _signed_in(request, user_id, "/tasks")
    if await current_viewer(request):
        return RedirectResponse(safe_next(next), status_code=303)
    return signin_page(request, target=next or "")


@router.post("/signin")
async def signin_with_key(
    request: Request,
    api_key: Annotated[Text, Form(max_length=200)] = "",
    next: Annotated[Text, Form(max_length=2000)] = "",
) -> Response:
    user = await user_for_api_key(request, api_key)
    if user is None:
        return signin_page(
            request,
            error="That API key is not valid: it may be mistyped, revoked, or its account "
            "deactivated.",
            status_code=401,
            target=next,
        )
    return await _signed_in(request, user.id, next)


def _signed_out() -> Response:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return response


@router.post("/signout")
async def signout(request: Request, viewer: ViewerDep) -> Response:
    state = app_state(request)
    async with session_scope(state.sessions, state.write_lock) as session:
        await sessions.end(session, token=viewer.session_token, hashing_key=state.hashing_key)
    return _signed_out()


@router.post("/signout-everywhere")
async def signout_everywhere(request: Request, viewer: ViewerDep) -> Response:
    state = app_state(request)
    async with session_scope(state.sessions, state.write_lock) as session:
        await sessions.end_all(session, user_id=viewer.user.id)
    return _signed_out()
