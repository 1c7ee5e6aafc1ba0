"""The pages' route class: CSRF is checked before any state-changing handler runs, a missing
session sends the browser to the sign-in page, and errors are pages, not JSON (unexpected ones
logged, as the API's handler logs them, and never shown)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from torale.db.database import CommitOutcomeUnknownError, database_unavailable
from torale.errors import ToraleError
from torale.web import csrf
from torale.web.rendering import is_htmx, render
from torale.web.viewer import SignInRequiredError

logger = logging.getLogger("torale.web")
_TITLES = {
    500: "Something went wrong",
    401: "Sign in again",
    403: "Not allowed",
    404: "Not found",
    409: "That cannot be done now",
    429: "Too many requests",
    502: "A provider failed",
    503: "Try again shortly",
    504: "That took too long",
}


def signin_redirect(request: Request) -> Response:
    target = "/signin"
    if request.method == "GET" and request.url.path not in ("/", "/signin"):
        target += "?next=" + quote(request.url.path, safe="/")
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, status: int, message: str) -> Response:
    template = "fragments/error.html" if is_htmx(request) else "error.html"
    title = _TITLES.get(status, "Something went wrong")
    headers = {"HX-Reswap": "innerHTML"} if is_htmx(request) else None
    return render(
        request,
        template,
        {"title": title, "message": message, "status": status},
        status_code=status,
        headers=headers,
    )


class WebRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                await csrf.check(request)
                return await handler(request)
            except SignInRequiredError:
                return signin_redirect(request)
            except RequestValidationError:
                return error_page(request, 404, "There is no such page.")
            except ToraleError as exc:
                return error_page(request, exc.status_code, exc.detail)
            except CommitOutcomeUnknownError:
                return error_page(request, 504, CommitOutcomeUnknownError.detail)
            except Exception as exc:
                if database_unavailable(exc):
                    logger.warning(
                        "database unavailable on %s %s: %s", request.method, request.url.path, exc
                    )
                    return error_page(
                        request, 503, "The database is unavailable; try again shortly."
                    )
                logger.exception("unhandled error on %s %s", request.method, request.url.path)
                return error_page(
                    request, 500, "Something went wrong on our side. It has been logged."
                )

        return route
