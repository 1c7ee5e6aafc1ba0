"""Errors the SDK raises, by HTTP status (docs/api.md §1)."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """The API answered with an error (or could not be reached: `status_code` None)."""

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class APIConnectionError(APIError):
    """The server could not be reached (after retries)."""


class ConfigurationError(APIError):
    """The client's own settings cannot work (an API URL that is not http(s)); raised when the
    client is made, before anything is sent."""


class AuthenticationError(APIError):
    """401: missing, invalid or revoked credentials."""


class PermissionDeniedError(APIError):
    """403: authenticated, but not allowed (not admin, deactivated account)."""


class NotFoundError(APIError):
    """404: unknown id, or another user's."""


class ConflictError(APIError):
    """409: a change the resource's state does not allow."""


class ValidationError(APIError):
    """400/422: the request was refused; `errors` holds `{loc, msg, type}` for each field."""

    def __init__(self, message: str, *, status_code: int, body: Any, errors: list[dict[str, Any]]):
        super().__init__(message, status_code=status_code, body=body)
        self.errors = errors


class RateLimitError(APIError):
    """429: over a rate limit; `retry_after` is the seconds to wait."""

    def __init__(self, message: str, *, body: Any, retry_after: float | None) -> None:
        super().__init__(message, status_code=429, body=body)
        self.retry_after = retry_after


def error_for(status: int, body: Any, retry_after: float | None) -> APIError:
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        fields = [d for d in detail if isinstance(d, dict)]
        message = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:]) or 'request'}: {d.get('msg')}"
            for d in fields
        )
        return ValidationError(
            message or "Invalid request", status_code=status, body=body, errors=fields
        )
    message = str(detail) if detail else f"HTTP {status}"
    if status == 401:
        return AuthenticationError(message, status_code=status, body=body)
    if status == 403:
        return PermissionDeniedError(message, status_code=status, body=body)
    if status == 404:
        return NotFoundError(message, status_code=status, body=body)
    if status == 409:
        return ConflictError(message, status_code=status, body=body)
    if status in (400, 422):
        return ValidationError(message, status_code=status, body=body, errors=[])
    if status == 429:
        return RateLimitError(message, body=body, retry_after=retry_after)
    return APIError(message, status_code=status, body=body)
