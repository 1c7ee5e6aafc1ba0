"""Routes under /auth: the caller, their API keys, and identity-provider sign-in."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from torale.auth import service
from torale.auth.deps import ClaimsDep, CurrentUser, admit
from torale.auth.lookup import AuthenticatedUser
from torale.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    RevokedResponse,
    SyncUserResponse,
    UserRead,
)
from torale.db.session import SessionDep
from torale.pages import Page
from torale.pagination import PageDep
from torale.state import app_state

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/sync-user",
    summary="Create or update the local user from an identity-provider token",
    description="Takes a sign-in token (not an API key). Safe to call repeatedly and concurrently.",
)
async def sync_user(request: Request, session: SessionDep, claims: ClaimsDep) -> SyncUserResponse:
    user, created = await service.sync_user_from_claims(session, claims=dict(claims))
    await service.apply_role_claim(
        session,
        user=user,
        claims=dict(claims),
        path=app_state(request).settings.jwt_role_claim,
    )
    await admit(request, AuthenticatedUser.from_user(user))
    return SyncUserResponse(user=UserRead.model_validate(user), created=created)


@router.get("/me", summary="The authenticated user")
async def me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@router.post(
    "/api-keys",
    summary="Create an API key",
    description="The key is in this response only; it is stored as a hash and cannot be shown "
    "again.",
)
async def create_api_key(
    request: Request, body: ApiKeyCreate, user: CurrentUser, session: SessionDep
) -> ApiKeyCreated:
    key, raw = await service.create_api_key(
        session, user_id=user.id, name=body.name, hashing_key=app_state(request).hashing_key
    )
    return ApiKeyCreated(key=raw, key_info=ApiKeyRead.model_validate(key))


@router.get("/api-keys", summary="List your API keys (revoked ones too)")
async def list_api_keys(user: CurrentUser, session: SessionDep, page: PageDep) -> Page[ApiKeyRead]:
    keys, total = await service.list_api_keys(session, user_id=user.id, page=page)
    return Page.of([ApiKeyRead.model_validate(key) for key in keys], total, page)


@router.delete(
    "/api-keys/{key_id}",
    summary="Revoke an API key",
    description="The key stops working at once. Revoking a revoked key is not an error.",
)
async def revoke_api_key(
    key_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> RevokedResponse:
    await service.revoke_api_key(session, user_id=user.id, key_id=key_id)
    return RevokedResponse()
