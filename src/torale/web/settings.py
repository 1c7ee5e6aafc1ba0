"""Settings pages: API keys (create, shown once; revoke), webhooks (URL, signing secret, test,
deliveries) and feeds (URLs shown once; new ones, off), through the same services and actions as
the API routes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from torale.auth import feed_tokens
from torale.auth import service as auth_service
from torale.auth.schemas import ApiKeyCreate
from torale.db.database import session_scope
from torale.errors import FieldValidationError, validation_error_items
from torale.feeds.urls import FeedUrls, base_url
from torale.inputs import Text
from torale.notify import actions as notify_actions
from torale.notify import service as notify_service
from torale.pagination import PageParams
from torale.runtime import Runtime
from torale.state import app_state
from torale.tasks import service as tasks_service
from torale.web.rendering import is_htmx, render
from torale.web.routing import WebRoute
from torale.web.viewer import Viewer, ViewerDep

router = APIRouter(route_class=WebRoute, include_in_schema=False)
_ALL = PageParams(page=1, limit=100)


@router.get("/settings")
async def settings_home() -> Response:
    return RedirectResponse("/settings/api-keys", status_code=303)


async def _keys_page(
    request: Request, viewer: Viewer, *, status_code: int = 200, **context: Any
) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, writes=False) as session:
        keys, _ = await auth_service.list_api_keys(session, user_id=viewer.user.id, page=_ALL)
    return render(
        request,
        "settings_keys.html",
        {"keys": keys, "title": "API keys", "section": "keys"} | context,
        status_code=status_code,
    )


@router.get("/settings/api-keys")
async def api_keys(request: Request, viewer: ViewerDep) -> Response:
    return await _keys_page(request, viewer)


@router.post("/settings/api-keys")
async def create_api_key(
    request: Request, viewer: ViewerDep, name: Annotated[Text, Form(max_length=500)] = ""
) -> Response:
    try:
        body = ApiKeyCreate(name=name)
    except ValidationError as exc:
        errors = [item["msg"] for item in validation_error_items(exc.errors())]
        return await _keys_page(request, viewer, status_code=422, name_error=errors, name=name)
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, rt.write_lock) as session:
        key, raw = await auth_service.create_api_key(
            session,
            user_id=viewer.user.id,
            name=body.name,
            hashing_key=app_state(request).hashing_key,
        )
    # The key is in this response only; it is never stored or shown again.
    return await _keys_page(request, viewer, new_key=raw, new_key_name=key.name)


@router.post("/settings/api-keys/{key_id}/revoke")
async def revoke_api_key(request: Request, viewer: ViewerDep, key_id: uuid.UUID) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, rt.write_lock) as session:
        await auth_service.revoke_api_key(session, user_id=viewer.user.id, key_id=key_id)
    return RedirectResponse("/settings/api-keys", status_code=303)


# --- webhooks ---------------------------------------------------------------------------------


async def _webhooks_page(
    request: Request, viewer: Viewer, *, status_code: int = 200, **context: Any
) -> Response:
    rt = Runtime.of_request(request)
    # Made (with its secret) on first use, as the API's GET does: a write.
    async with session_scope(rt.sessions, rt.write_lock) as session:
        config = await notify_service.webhook_config(session, user_id=viewer.user.id)
        attempts, total = await notify_service.list_attempts(
            session, user_id=viewer.user.id, page=PageParams(page=1, limit=25), task_id=None
        )
    page = {
        "config": config,
        "url_value": config.url or "",
        "attempts": attempts,
        "attempts_total": total,
        "title": "Webhooks",
        "section": "webhooks",
    }
    return render(request, "settings_webhooks.html", page | context, status_code=status_code)


@router.get("/settings/webhooks")
async def webhooks(request: Request, viewer: ViewerDep) -> Response:
    return await _webhooks_page(request, viewer)


@router.post("/settings/webhooks")
async def save_webhook(
    request: Request,
    viewer: ViewerDep,
    url: Annotated[Text, Form(max_length=2048)] = "",
    enabled: Annotated[Text, Form()] = "",
) -> Response:
    rt = Runtime.of_request(request)
    url = url.strip()
    try:
        if url:
            notify_actions.check_webhook_url(rt.settings, url)
    except FieldValidationError as exc:
        return await _webhooks_page(
            request, viewer, status_code=422, url_error=exc.errors[0]["msg"], url_value=url
        )
    async with session_scope(rt.sessions, rt.write_lock) as session:
        await notify_service.update_webhook_config(
            session,
            user_id=viewer.user.id,
            url=url or None,
            enabled=bool(enabled),
            fields={"url", "enabled"},
        )
    return RedirectResponse("/settings/webhooks?saved=1", status_code=303)


@router.post("/settings/webhooks/rotate")
async def rotate_secret(request: Request, viewer: ViewerDep) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, rt.write_lock) as session:
        await notify_service.rotate_secret(session, user_id=viewer.user.id)
    return RedirectResponse("/settings/webhooks?rotated=1", status_code=303)


@router.post("/settings/webhooks/test")
async def send_test_webhook(
    request: Request, viewer: ViewerDep, url: Annotated[Text, Form(max_length=2048)] = ""
) -> Response:
    state = app_state(request)
    rt = Runtime.of_request(request)
    context: dict[str, Any] = {}
    try:
        async with session_scope(rt.sessions, rt.write_lock) as session:
            context["test"] = await notify_actions.send_test(
                session,
                settings=state.settings,
                dispatcher=state.dispatcher,
                user_id=viewer.user.id,
                url=url.strip() or None,
            )
    except FieldValidationError as exc:
        context["test_error"] = exc.errors[0]["msg"].replace(
            "or set one with PUT /api/v1/webhooks/config", "or save a webhook URL first"
        )
    if is_htmx(request):
        return render(request, "fragments/webhook_test.html", context)
    return await _webhooks_page(request, viewer, **context)


# --- feeds -------------------------------------------------------------------------------------


async def _feeds_page(request: Request, viewer: Viewer, **context: Any) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, writes=False) as session:
        made = await feed_tokens.created_at(session, user_id=viewer.user.id)
        tasks, _ = await tasks_service.list_tasks(session, user_id=viewer.user.id, page=_ALL)
    page = {"made": made, "tasks": tasks, "title": "Feeds", "section": "feeds"}
    return render(request, "settings_feeds.html", page | context)


@router.get("/settings/feeds")
async def feeds(request: Request, viewer: ViewerDep) -> Response:
    return await _feeds_page(request, viewer)


@router.post("/settings/feeds/rotate")
async def rotate_feed_token(request: Request, viewer: ViewerDep) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, rt.write_lock) as session:
        token, _ = await feed_tokens.rotate(
            session, user_id=viewer.user.id, hashing_key=app_state(request).hashing_key
        )
    # The URLs are in this response only; the token is never stored or shown again.
    return await _feeds_page(
        request, viewer, urls=FeedUrls.of(base_url(rt.settings, request), token)
    )


@router.post("/settings/feeds/off")
async def feeds_off(request: Request, viewer: ViewerDep) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, rt.write_lock) as session:
        await feed_tokens.revoke(session, user_id=viewer.user.id)
    return RedirectResponse("/settings/feeds?off=1", status_code=303)
