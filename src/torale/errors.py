"""Error types services raise, and the handlers that turn every failure into the documented shape.

`{"detail": "message"}` for every error, `{"detail": [{"loc", "msg", "type"}]}` for 422s.
Never a stack trace, never echoing the submitted input back (it may hold secrets).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from torale.db.database import CommitOutcomeUnknownError, database_unavailable
from torale.retry_after import retry_after_header

logger = logging.getLogger("torale.errors")


class ToraleError(Exception):
    """A failure with a status code and a user-facing message."""

    status_code = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotFoundError(ToraleError):
    status_code = 404


class ConflictError(ToraleError):
    status_code = 409


class AuthenticationError(ToraleError):
    status_code = 401

    def __init__(self, detail: str = "Invalid or missing credentials") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class PermissionDeniedError(ToraleError):
    status_code = 403


class RateLimitedError(ToraleError):
    status_code = 429


class ServiceUnavailableError(ToraleError):
    status_code = 503


class UpstreamError(ToraleError):
    """A provider Torale depends on (search, model) failed."""

    status_code = 502


class UpstreamTimeoutError(ToraleError):
    status_code = 504


class FieldValidationError(ToraleError):
    """A 422 about fields, raised by a service after schema validation passed."""

    status_code = 422

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e["msg"]) for e in errors))
        self.errors = [dict(e) for e in errors]

    @classmethod
    def single(
        cls, loc: Sequence[str | int], msg: str, type_: str = "value_error"
    ) -> FieldValidationError:
        return cls([field_error(loc, msg, type_)])


def field_error(loc: Sequence[str | int], msg: str, type_: str = "value_error") -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type_}


class ErrorBody(BaseModel):
    """Every error but validation errors: `{"detail": "Human readable message"}`."""

    detail: str


_DESCRIPTIONS = {
    401: "Missing, invalid or revoked credentials",
    403: "Not allowed (not an admin, or a deactivated account)",
    404: "Unknown id, or another user's",
    409: "The resource's state does not allow this change",
    413: "Request body too large",
    429: "Rate limit exceeded, or too many failed authentication attempts from this address "
    "(see Retry-After)",
    502: "A provider Torale depends on (search, model) failed",
    503: "The database or the scheduler is unavailable; try again shortly",
    504: "The work did not finish in time: a run past its time limit, or a change whose "
    "commit the database stopped answering (it may or may not have been saved)",
}


# The schema of ErrorBody in the OpenAPI document (torale.openapi.install puts it there). A
# reference rather than `"model": ErrorBody`: FastAPI builds a response field for every model
# named in `responses`, for each route of each app it makes, and these are on every route.
ERROR_BODY_REF = {"$ref": "#/components/schemas/ErrorBody"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, in the documented shape."""
    return {
        code: {
            "description": _DESCRIPTIONS[code],
            "content": {"application/json": {"schema": ERROR_BODY_REF}},
        }
        for code in codes
    }


# What every authenticated route may answer besides its own errors.
AUTHENTICATED = error_responses(401, 403, 429, 503, 504)


def validation_error_items(errors: Sequence[Any]) -> list[dict[str, Any]]:
    items = []
    for error in errors:
        msg = str(error.get("msg", "Invalid value"))
        # Pydantic prefixes messages of plain ValueErrors; the prefix says nothing to a user.
        msg = msg.removeprefix("Value error, ")
        items.append({"loc": list(error.get("loc", ())), "msg": msg, "type": error.get("type")})
    return items


def error_response(exc: ToraleError) -> JSONResponse:
    """The documented answer to `exc` (also an ASGI app, for middleware that answers itself)."""
    if isinstance(exc, FieldValidationError):
        return JSONResponse({"detail": exc.errors}, status_code=422)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


# What Python's JSON parser says, in words for a person who wrote the body by hand.
_JSON_PROBLEMS = {
    "Expecting value": "a value was expected (a string, number, object, array, true, false "
    "or null)",
    "Expecting ',' delimiter": "a comma or a closing bracket was expected",
    "Expecting ':' delimiter": "a colon was expected after the key",
    "Expecting property name enclosed in double quotes": "a key in double quotes was expected "
    "(JSON has no trailing commas, comments or single quotes)",
    "Unterminated string starting at": "a string is not closed with a double quote",
    "Invalid control character at": "a string contains a raw control character (write a line "
    "break as \\n and a tab as \\t)",
    "Invalid \\escape": "a string contains an unknown escape (write a backslash as \\\\)",
    "Invalid \\uXXXX escape": "a \\u escape needs four hexadecimal digits",
    "Extra data": "there is more after the JSON value",
}


def _json_error_message(error: Any, body: Any) -> str:
    """ "Invalid JSON at line L, column C: what is wrong" for FastAPI's json_invalid error."""
    loc = error.get("loc", ())
    reason = str((error.get("ctx") or {}).get("error", ""))
    problem = _JSON_PROBLEMS.get(reason, reason[:1].lower() + reason[1:] or "it cannot be read")
    if len(loc) != 2 or not isinstance(loc[1], int) or not isinstance(body, str):
        return f"Invalid JSON: {problem}"
    position = min(loc[1], len(body))
    line = body.count("\n", 0, position) + 1
    column = position - (body.rfind("\n", 0, position) + 1) + 1
    if position >= len(body.rstrip()) and reason != "Extra data":
        problem = "the body ends before the JSON value is complete"
    return f"Invalid JSON at line {line}, column {column}: {problem}"


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = validation_error_items(exc.errors())
    for item, error in zip(items, exc.errors(), strict=True):
        if item["type"] == "json_invalid" and len(item["loc"]) == 2:
            # FastAPI puts the character offset in loc; say line and column in words instead.
            item["msg"] = _json_error_message(error, exc.body)
            item["loc"] = ["body"]
    if not _is_json(request.headers.get("content-type")):
        # FastAPI reads only JSON-typed bodies (a CSRF guard); say so instead of "not an object".
        for item in items:
            if item["loc"] == ["body"] and item["type"] in ("model_attributes_type", "dict_type"):
                item["msg"] = "Request body must be JSON sent with Content-Type: application/json"
    return JSONResponse({"detail": items}, status_code=422)


def response_for(exc: Exception, where: str) -> JSONResponse:
    """The documented answer to a failure that is not a request-validation error: what the
    API's handlers answer, and what a caller that is not a route (the MCP endpoint) answers
    too. `where` names the request in logs ("GET /api/v1/tasks")."""
    if isinstance(exc, ToraleError):
        return error_response(exc)
    if isinstance(exc, StarletteHTTPException):
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
    if isinstance(exc, CommitOutcomeUnknownError):
        logger.warning("database lost during the commit of %s: %s", where, exc)
        # Not 503: clients retry those as "not carried out", which a create may have been.
        return JSONResponse({"detail": CommitOutcomeUnknownError.detail}, status_code=504)
    if isinstance(exc, IntegrityError):
        # A race with a concurrent change (the constraint held): nothing was written.
        logger.warning("conflict on %s: %s", where, exc.orig)
        return JSONResponse(
            {"detail": "A concurrent change conflicted with this one; try again"}, status_code=409
        )
    if isinstance(exc, _DATABASE_FAILURES) and database_unavailable(exc):
        logger.warning("database unavailable on %s: %s", where, exc)
        return JSONResponse(
            {"detail": "The database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": retry_after_header(5)},
        )
    logger.exception("unhandled error on %s", where, exc_info=exc)
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


_DATABASE_FAILURES = (DBAPIError, PoolTimeoutError, ConnectionError, TimeoutError)


async def _failure(request: Request, exc: Exception) -> JSONResponse:
    return response_for(exc, f"{request.method} {request.url.path}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    for failure in (
        ToraleError,
        StarletteHTTPException,
        CommitOutcomeUnknownError,
        *_DATABASE_FAILURES,
        Exception,
    ):
        app.add_exception_handler(failure, _failure)
