"""The Torale Python SDK: `Torale`, `ToraleAsync`, `monitor`, and the errors they raise."""

from torale.sdk.builder import Monitor, monitor
from torale.sdk.client import Torale, ToraleAsync
from torale.sdk.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ValidationError,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "ConflictError",
    "Monitor",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Torale",
    "ToraleAsync",
    "ValidationError",
    "monitor",
]
