"""Who is calling: `CurrentUser` for every authenticated route (auth, 403, rate limit)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from torale.auth import service
from torale.auth.keys import hash_api_key, looks_like_api_key
from torale.auth.lookup import AuthenticatedUser
from torale.db.engine import session_scope
from torale.errors import AuthenticationError, PermissionDeniedError, RateLimitedError
from torale.retry_after import retry_after_header
from torale.scope_state import RATE_LIMIT_HEADERS, scope_state
from torale.state import app_state

_SCHEME_DOC = "An API key (`sk_…`) or a token from the configured identity provider."
_bearer = HTTPBearer(auto_error=False, scheme_name="HTTPBearer", description=_SCHEME_DOC)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True, slots=True)
class Principal:
    user: AuthenticatedUser
    api_key_id: uuid.UUID | None  # None for identity-provider tokens


async def _from_api_key(request: Request, token: str) -> Principal:
    state = app_state(request)
    owner = await state.key_lookup.find(hash_api_key(token, state.hashing_key))
    if owner is None or owner.revoked:
        raise AuthenticationError("Invalid or revoked API key")
    state.key_usage.record(owner.key_id)
    return Principal(user=owner.user, api_key_id=owner.key_id)


async def _claims(request: Request, token: str) -> dict[str, object]:
    verifier = app_state(request).jwt
    if verifier is None:
        raise AuthenticationError("Invalid API key (sign-in tokens are not enabled on this server)")
    return await verifier.verify(token)


async def _from_token(request: Request, token: str) -> Principal:
    claims = await _claims(request, token)
    state = app_state(request)
    role_claim = state.settings.jwt_role_claim
    async with session_scope(state.sessions) as session:
        user = await service.get_user_by_subject(session, subject=str(claims["sub"]))
    needs_role = (
        user is not None
        and role_claim is not None
        and user.role != service.claimed_role(claims, role_claim)
    )
    if user is None or needs_role:
        # First sight of this subject, or its role changed: a write, under the write lock.
        async with session_scope(state.sessions, state.write_lock) as session:
            user, _ = await service.sync_user_from_claims(session, claims=claims, update=False)
            await service.apply_role_claim(session, user=user, claims=claims, path=role_claim)
    return Principal(user=AuthenticatedUser.from_user(user), api_key_id=None)


async def _enforce(request: Request, principal: Principal) -> Principal:
    if not principal.user.is_active:
        raise PermissionDeniedError("This account is deactivated")
    identity = (
        f"key:{principal.api_key_id}" if principal.api_key_id else f"user:{principal.user.id}"
    )
    result = await app_state(request).rate_limiter.hit(identity)
    if result is not None:
        scope_state(request.scope)[RATE_LIMIT_HEADERS] = result.headers()
        if not result.allowed:
            raise RateLimitedError(
                f"Rate limit exceeded: {result.exceeded}",
                headers={"Retry-After": retry_after_header(result.retry_after)},
            )
    return principal


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise AuthenticationError("Missing credentials: send `Authorization: Bearer <API key>`")
    return credentials.credentials


class _Authenticate(HTTPBearer):
    """The whole of authentication as one security dependency.

    Being an HTTPBearer keeps the OpenAPI security scheme; doing all the work in one call
    keeps FastAPI's per-dependency cost off the hottest path of the API.
    """

    async def __call__(self, request: Request) -> AuthenticatedUser:  # type: ignore[override]
        token = _token(await super().__call__(request))
        if looks_like_api_key(token):
            principal = await _from_api_key(request, token)
        else:
            principal = await _from_token(request, token)
        return (await _enforce(request, principal)).user


current_user = _Authenticate(auto_error=False, scheme_name="HTTPBearer", description=_SCHEME_DOC)


async def current_admin(
    user: Annotated[AuthenticatedUser, Depends(current_user)],
) -> AuthenticatedUser:
    if user.role != "admin":
        raise PermissionDeniedError("Admin role required")
    return user


async def identity_provider_claims(request: Request, credentials: BearerDep) -> dict[str, object]:
    """Claims of a verified identity-provider token (for routes that take only those)."""
    token = _token(credentials)
    if looks_like_api_key(token):
        await _from_api_key(request, token)  # an unknown key is still a 401
        raise PermissionDeniedError("This route takes a sign-in token, not an API key")
    return await _claims(request, token)


async def enforce_for(request: Request, user: AuthenticatedUser) -> None:
    """Deactivation and rate limits for a route that resolved the user itself."""
    await _enforce(request, Principal(user=user, api_key_id=None))


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]
AdminUser = Annotated[AuthenticatedUser, Depends(current_admin)]
ClaimsDep = Annotated[dict[str, object], Depends(identity_provider_claims)]
