"""The web app: server-rendered pages (Jinja2 + htmx) served by the same process as the API,
calling the same actions and services. `install_web(app)` adds it to an app."""

from __future__ import annotations

from fastapi import FastAPI

from torale.web import admin, assets, docs, oidc, settings, signin, tasks
from torale.web.headers import SecurityHeadersMiddleware
from torale.web.page_fast_path import CachedPageMiddleware


def install_web(app: FastAPI) -> None:
    """Pages, their assets, offline /docs and /redoc, the cached pages' fast path, and the
    security headers of every page.
    The JSON API is unchanged: it never reads the session cookie."""
    for module in (signin, oidc, tasks, settings, admin, assets, docs):
        app.include_router(module.router)
    # Cached pages are answered inside the security headers, before routing.
    app.add_middleware(CachedPageMiddleware, state=app.state.torale)
    app.add_middleware(SecurityHeadersMiddleware)
