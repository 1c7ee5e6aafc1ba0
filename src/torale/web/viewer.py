"""Who is looking at a page: the signed-in user of the browser's session cookie.

The JSON API never reads this cookie (it takes `Authorization: Bearer` only), so a page of
another site cannot use a signed-in browser against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from torale.auth import sessions
from torale.auth.authenticate import Caller
from torale.auth.lookup import AuthenticatedUser
from torale.db.database import session_scope
from torale.errors import NotFoundError, PermissionDeniedError
from torale.state import AppState, app_state
from torale.web import csrf


class SignInRequiredError(Exception):
    """No live session: the page redirects to the sign-in page."""


@dataclass(frozen=True, slots=True)
class Viewer:
    user: AuthenticatedUser
    session_token: str
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.user.role == "admin"


async def identify(state: AppState, token: str) -> Viewer | None:
    """The signed-in user of a session cookie, nothing counted; None for no live session.
    Marks the session used when that is due (a write at most once a minute per session)."""
    found = await sessions.find(
        state.session_lookup,
        token=token,
        hashing_key=state.hashing_key,
        policy=sessions.SessionPolicy.from_settings(state.settings),
    )
    if found is None:
        return None
    if found.needs_touch:
        async with session_scope(state.sessions, state.write_lock) as session:
            await sessions.touch(session, id_hash=found.id_hash)
        state.session_lookup.forget(found.id_hash)
    return Viewer(found.user, token, csrf.token_for(token, state.hashing_key))


async def admit(state: AppState, viewer: Viewer) -> bool:
    """The API's one path from here: a deactivated account is refused (False), the request
    counted against the user's rate limit (a 429 page past it)."""
    try:
        await state.authenticator.admit(Caller(user=viewer.user, api_key_id=None))
    except PermissionDeniedError:
        return False
    return True


async def current_viewer(request: Request) -> Viewer | None:
    token = request.cookies.get(sessions.COOKIE_NAME)
    if not token:
        return None
    state = app_state(request)
    viewer = await identify(state, token)
    if viewer is None or not await admit(state, viewer):
        return None
    return viewer


async def require_viewer(request: Request) -> Viewer:
    viewer = await current_viewer(request)
    if viewer is None:
        raise SignInRequiredError
    request.state.viewer = viewer
    return viewer


async def require_admin(viewer: Annotated[Viewer, Depends(require_viewer)]) -> Viewer:
    if not viewer.is_admin:
        raise NotFoundError("Page not found")  # as if the admin pages did not exist
    return viewer


ViewerDep = Annotated[Viewer, Depends(require_viewer)]
AdminViewerDep = Annotated[Viewer, Depends(require_admin)]
