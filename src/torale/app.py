"""create_app(settings) → the FastAPI application: routers, middleware, error handlers, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields

from fastapi import FastAPI
from starlette.routing import Route

from torale import __version__
from torale.admin.router import router as admin_router
from torale.auth.authenticate import Authenticator
from torale.auth.jwt import JWTVerifier
from torale.auth.lookup import KeyLookup, SessionLookup
from torale.auth.oidc import OidcProvider
from torale.auth.router import router as auth_router
from torale.auth.usage import KeyUsageRecorder
from torale.config import Settings
from torale.db.changes import watch_changes
from torale.errors import AUTHENTICATED, error_responses, install_error_handlers
from torale.executions.router import router as executions_router
from torale.feeds.router import feed_router
from torale.feeds.router import router as feeds_router
from torale.health import router as health_router
from torale.logs import silence_secret_bearing_loggers, slow_step
from torale.mcp.local import McpEndpoint
from torale.metrics import Metrics, MetricsMiddleware
from torale.metrics import router as metrics_router
from torale.middleware import (
    BodySizeLimitMiddleware,
    RateLimitHeadersMiddleware,
    TrailingSlashMiddleware,
)
from torale.notify.router import router as webhooks_router
from torale.openapi import install as install_openapi_examples
from torale.ratelimit import RateLimiter
from torale.services import Services, build_services
from torale.state import AppState
from torale.tasks.list_cache import TaskListCache
from torale.tasks.list_fast_path import TaskListFastPath
from torale.tasks.router import router as tasks_router
from torale.watch.router import router as watch_router
from torale.web import install_web
from torale.web.page_cache import PageCache

DESCRIPTION = """\
Torale watches the web for you: a task names a search query, a condition in plain language,
a schedule and where to be told. Authenticate with `Authorization: Bearer sk_…`.

Errors are `{"detail": "message"}`; validation errors (422) are
`{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`. Lists take `?page=&limit=` and
answer `{"items", "total", "page", "limit"}`, newest first. Authenticated responses carry
`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` for the window closest to
running out; past a limit the answer is 429 with `Retry-After`. Limits are per user (all of a
user's keys share them); failed authentication is throttled per client address.
"""


def build_state(settings: Settings, *, dispatch: bool = True) -> AppState:
    """The API process's state: the background services and the web parts on them."""
    services = build_services(settings, dispatch=dispatch)
    rate_limiter = RateLimiter(
        settings.rate_limits, settings.redis_url, failure_spec=settings.auth_failure_limits
    )
    key_usage = KeyUsageRecorder()
    jwt = JWTVerifier.from_settings(settings)
    changes = watch_changes(services.database, timeout=settings.database_timeout_seconds)
    key_lookup = KeyLookup(services.database, changes)
    return AppState(
        **{field.name: getattr(services, field.name) for field in fields(Services)},
        rate_limiter=rate_limiter,
        key_usage=key_usage,
        jwt=jwt,
        oidc=OidcProvider.from_settings(settings),
        hashing_key=settings.hashing_key,
        changes=changes,
        key_lookup=key_lookup,
        session_lookup=SessionLookup(services.database, changes),
        task_lists=TaskListCache(settings.task_list_cache_bytes),
        pages=PageCache(settings.page_cache_bytes, changes),
        metrics=Metrics(),
        authenticator=Authenticator(
            key_lookup=key_lookup,
            hashing_key=settings.hashing_key,
            key_usage=key_usage,
            rate_limiter=rate_limiter,
            jwt=jwt,
            role_claim=settings.jwt_role_claim,
            sessions=services.sessions,
            write_lock=services.write_lock,
        ),
    )


def create_app(settings: Settings | None = None, *, scheduler: bool = True) -> FastAPI:
    """The API. `scheduler=False` (`torale serve --no-scheduler`) leaves scheduled runs to
    `torale worker` processes."""
    settings = settings or Settings()
    silence_secret_bearing_loggers()  # whoever configured logging: no channel secret in it
    state = build_state(settings, dispatch=scheduler)
    mcp = McpEndpoint(state, lambda: app.openapi())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await state.changes.start()
        flusher = asyncio.create_task(state.key_usage.run(state.sessions))
        await state.scheduler.start()
        if state.dispatch:
            await state.start_background()
        try:
            yield
        finally:
            with slow_step("the MCP endpoint"):
                await mcp.close()
            with slow_step("the dispatcher and the snapshot pruner"):
                await state.stop_background()
            with slow_step("the scheduler"):
                await state.scheduler.stop()
            with slow_step("the key-usage flusher"):
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
            await state.close()

    app = FastAPI(
        title="Torale API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        # /docs and /redoc come from the web package, with their scripts shipped in it.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.torale = state
    install_error_handlers(app)
    install_openapi_examples(app)
    # The busiest router first (routes match in order); each documents the errors it can answer.
    app.include_router(tasks_router, responses=AUTHENTICATED | error_responses(404, 409, 413))
    app.include_router(executions_router, responses=AUTHENTICATED | error_responses(404, 413, 502))
    app.include_router(watch_router, responses=AUTHENTICATED | error_responses(404, 413))
    app.include_router(webhooks_router, responses=AUTHENTICATED | error_responses(413))
    app.include_router(feeds_router, responses=AUTHENTICATED | error_responses(413))
    app.include_router(feed_router)
    app.include_router(health_router, responses=error_responses(413))
    app.include_router(metrics_router, responses=error_responses(401, 413))
    app.include_router(auth_router, responses=AUTHENTICATED | error_responses(404, 409, 413))
    app.include_router(admin_router, responses=AUTHENTICATED | error_responses(404, 409, 413))
    # The MCP server (Streamable HTTP), for AI assistants: the API's tools and credentials.
    app.router.routes.append(Route("/mcp", mcp, include_in_schema=False))
    install_web(app)
    # Last added runs first: slashes are normalised before anything routes.
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(TaskListFastPath, state=state)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.add_middleware(TrailingSlashMiddleware)
    return app
