"""Feed routes: the token (under /api/v1/feeds, Bearer-authenticated like the rest of the API)
and the feeds themselves (under /feeds/<token>/, for readers that send no headers)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from torale.auth import feed_tokens
from torale.auth.authenticate import FEED_NOT_FOUND, client_address
from torale.auth.deps import CurrentUser
from torale.db.database import session_scope
from torale.db.session import SessionDep
from torale.errors import NotFoundError
from torale.feeds import atom, conditional, service
from torale.feeds.schemas import FeedTokenCreated, FeedTokenRead
from torale.feeds.urls import FEEDS, FeedUrls, base_url, notifications_url, task_url
from torale.state import app_state

router = APIRouter(prefix="/api/v1/feeds", tags=["feeds"])
# Not in the OpenAPI document: their credential is in the path, and they answer Atom.
feed_router = APIRouter(prefix=FEEDS, include_in_schema=False)


@router.get(
    "/token",
    summary="Whether you have a feed token",
    description="The token itself is stored as a hash and cannot be shown again: "
    "`POST /api/v1/feeds/token` makes a new one, with its feed URLs.",
)
async def get_token(user: CurrentUser, session: SessionDep) -> FeedTokenRead:
    made = await feed_tokens.created_at(session, user_id=user.id)
    return FeedTokenRead(active=made is not None, created_at=made)


@router.post(
    "/token",
    summary="Make a new feed token (rotate)",
    description="Makes your feed token, or replaces it: the old feed URLs stop working at once "
    "(404). The token and the URLs that carry it are in this response only.",
)
async def rotate_token(
    request: Request, user: CurrentUser, session: SessionDep
) -> FeedTokenCreated:
    state = app_state(request)
    token, made = await feed_tokens.rotate(session, user_id=user.id, hashing_key=state.hashing_key)
    urls = FeedUrls.of(base_url(state.settings, request), token)
    return FeedTokenCreated(
        token=token,
        created_at=made,
        notifications_url=urls.notifications_url,
        task_url_template=urls.task_url_template,
    )


@router.delete(
    "/token",
    summary="Turn your feeds off",
    description="Your feed token is removed: every feed URL stops working at once (404) until "
    "you make a new one. Turning off feeds that are off is not an error.",
)
async def delete_token(user: CurrentUser, session: SessionDep) -> FeedTokenRead:
    await feed_tokens.revoke(session, user_id=user.id)
    return FeedTokenRead(active=False, created_at=None)


def _task_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundError(FEED_NOT_FOUND) from None


async def _feed(request: Request, token: str, task_id: str | None) -> Response:
    state = app_state(request)
    # First, so that an unknown token is refused (and counted) whatever follows it.
    user = await state.authenticator.authenticate_feed(token, client_address(request.scope))
    task = _task_id(task_id) if task_id is not None else None
    async with session_scope(state.sessions, writes=False) as session:
        try:
            found = await service.notifications(session, user_id=user.id, task_id=task)
        except NotFoundError:
            raise NotFoundError(FEED_NOT_FOUND) from None  # another user's task: no hint
    base = base_url(state.settings, request)
    self_url = task_url(base, token, str(task)) if task else notifications_url(base, token)
    updated = atom.updated_at(found, found.task.created_at if found.task else user.created_at)
    links = atom.FeedLinks(base_url=base, self_url=self_url)
    body = atom.render(found, user_id=user.id, links=links, updated=updated)
    return conditional.answer(request, body, updated=updated, media_type=atom.MEDIA_TYPE)


@feed_router.get("/{token}/notifications.atom")
async def notifications_feed(request: Request, token: str) -> Response:
    return await _feed(request, token, None)


@feed_router.get("/{token}/tasks/{task_id}.atom")
async def task_feed(request: Request, token: str, task_id: str) -> Response:
    return await _feed(request, token, task_id)
