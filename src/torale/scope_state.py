"""What one layer of a request leaves for another in the ASGI scope's `state` (the dictionary
behind `request.state`): every key, named once.

Plain strings in `scope["state"]` rather than attributes on `request.state`, because the pure
ASGI middleware (the list fast path, the metrics and rate-limit header middleware) read and
write them without building a Request.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

# The `X-RateLimit-*` headers of the caller's budget, as (name, value) byte pairs, set by
# authentication and added to the response by `middleware.RateLimitHeadersMiddleware`.
RATE_LIMIT_HEADERS = "rate_limit_headers"
# The caller an MCP request authenticated as (an `AuthenticatedUser`), set by the `/mcp`
# endpoint and read by the tools it serves (`mcp.local`).
CALLER = "caller"
# The route template a response is counted under when no FastAPI route answered it (the list
# fast path), read by `metrics.MetricsMiddleware`.
ROUTE_TEMPLATE = "route_template"


def scope_state(scope: Scope) -> dict[str, Any]:
    """The request's state dictionary, made if the server did not make one."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state
