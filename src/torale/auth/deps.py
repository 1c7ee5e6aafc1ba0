"""Who is calling: `CurrentUser` for every authenticated route (auth, 403, rate limit)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from torale.auth import service
from torale.auth.keys import hash_api_key, looks_like_api_key
from torale.db.models import ApiKey, User
from torale.db.session import SessionDep
from torale.errors import AuthenticationError, PermissionDeniedError, RateLimitedError
from torale.middleware import RATE_LIMIT_STATE_KEY
from torale.state import app_state

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`sk_…`) or a token from the configured identity provider.",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    api_key_id: uuid.UUID | None  # None for identity-provider tokens


async def _from_api_key(request: Request, session: SessionDep, token: str) -> Principal:
    state = app_state(request)
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.revoked_at, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == hash_api_key(token, state.hashing_key))
        )
    ).first()
    if row is None or row.revoked_at is not None:
        raise AuthenticationError("Invalid or revoked API key")
    state.key_usage.record(row.id)
    return Principal(user=row.User, api_key_id=row.id)


async def _claims(request: Request, token: str) -> dict[str, object]:
    verifier = app_state(request).jwt
    if verifier is None:
        raise AuthenticationError("Invalid API key (sign-in tokens are not enabled on this server)")
    return await verifier.verify(token)


async def _enforce(request: Request, principal: Principal) -> Principal:
    if not principal.user.is_active:
        raise PermissionDeniedError("This account is deactivated")
    identity = (
        f"key:{principal.api_key_id}" if principal.api_key_id else f"user:{principal.user.id}"
    )
    result = await app_state(request).rate_limiter.hit(identity)
    if result is not None:
        request.scope.setdefault("state", {})[RATE_LIMIT_STATE_KEY] = result.headers()
        if not result.allowed:
            raise RateLimitedError(
                f"Rate limit exceeded: {result.exceeded}",
                headers={"Retry-After": str(result.retry_after)},
            )
    return principal


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise AuthenticationError("Missing credentials: send `Authorization: Bearer <API key>`")
    return credentials.credentials


async def current_principal(
    request: Request, session: SessionDep, credentials: BearerDep
) -> Principal:
    token = _token(credentials)
    if looks_like_api_key(token):
        principal = await _from_api_key(request, session, token)
    else:
        claims = await _claims(request, token)
        user, _ = await service.sync_user_from_claims(session, claims=claims, update=False)
        principal = Principal(user=user, api_key_id=None)
    return await _enforce(request, principal)


async def current_user(principal: Annotated[Principal, Depends(current_principal)]) -> User:
    return principal.user


async def current_admin(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "admin":
        raise PermissionDeniedError("Admin role required")
    return user


async def identity_provider_claims(request: Request, credentials: BearerDep) -> dict[str, object]:
    """Claims of a verified identity-provider token (for routes that take only those)."""
    token = _token(credentials)
    if looks_like_api_key(token):
        raise PermissionDeniedError("This route takes a sign-in token, not an API key")
    return await _claims(request, token)


async def enforce_for(request: Request, user: User) -> None:
    """Deactivation and rate limits for a route that resolved the user itself."""
    await _enforce(request, Principal(user=user, api_key_id=None))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(current_admin)]
ClaimsDep = Annotated[dict[str, object], Depends(identity_provider_claims)]
