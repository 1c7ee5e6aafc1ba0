"""Who is calling: `CurrentUser` for every authenticated route, on `auth.authenticate`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from torale.auth.authenticate import (
    Admission,
    Caller,
    bearer_credential,
    client_address,
)
from torale.auth.lookup import AuthenticatedUser
from torale.errors import PermissionDeniedError
from torale.scope_state import RATE_LIMIT_HEADERS, scope_state
from torale.state import app_state

_SCHEME_DOC = "An API key (`sk_…`) or a token from the configured identity provider."


def _note(request: Request, admission: Admission) -> AuthenticatedUser:
    if admission.rate_limit_headers:
        scope_state(request.scope)[RATE_LIMIT_HEADERS] = admission.rate_limit_headers
    return admission.user


class _Authenticate(HTTPBearer):
    """The whole of authentication as one security dependency.

    Being an HTTPBearer keeps the OpenAPI security scheme; doing all the work in one call
    keeps FastAPI's per-dependency cost off the hottest path of the API.
    """

    async def __call__(self, request: Request) -> AuthenticatedUser:  # type: ignore[override]
        scope = request.scope
        admission = await app_state(request).authenticator.authenticate(
            bearer_credential(scope), client_address(scope)
        )
        return _note(request, admission)


current_user = _Authenticate(auto_error=False, scheme_name="HTTPBearer", description=_SCHEME_DOC)


async def current_admin(
    user: Annotated[AuthenticatedUser, Depends(current_user)],
) -> AuthenticatedUser:
    if user.role != "admin":
        raise PermissionDeniedError("Admin role required")
    return user


class _SignInClaims(HTTPBearer):
    """Claims of a verified identity-provider token (for routes that take only those)."""

    async def __call__(self, request: Request) -> dict[str, Any]:  # type: ignore[override]
        scope = request.scope
        return await app_state(request).authenticator.sign_in_claims(
            bearer_credential(scope), client_address(scope)
        )


identity_provider_claims = _SignInClaims(
    auto_error=False, scheme_name="HTTPBearer", description=_SCHEME_DOC
)


async def admit(request: Request, user: AuthenticatedUser) -> None:
    """Deactivation and rate limits for a route that resolved the user itself (sign-in)."""
    admission = await app_state(request).authenticator.admit(Caller(user=user, api_key_id=None))
    _note(request, admission)


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]
AdminUser = Annotated[AuthenticatedUser, Depends(current_admin)]
ClaimsDep = Annotated[dict[str, Any], Depends(identity_provider_claims)]
