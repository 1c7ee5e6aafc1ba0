"""Authentication, the one path every caller takes: a credential → the caller, or the refusal.

`Authenticator.authenticate(credential, client)` is all of it. It takes the raw bearer
credential and the client's address, not a framework request, so the API's dependencies
(`auth.deps`), the task-list fast path (`tasks.list_fast_path`), and a web-session cookie or an
MCP endpoint call it the same way. In order:

1. `check_client`: an address past its budget of failed attempts → 429 (no I/O);
2. `identify`: an API key (HMAC of the key, looked up; unknown or revoked → 401) or an
   identity-provider token (verified; its user made or updated on first sight) → `Caller`.
   A failure with a credential counts against the client's address; the attempt that goes
   past the budget is answered 429 instead of 401;
3. `admit`: the key's use is recorded, a deactivated account → 403, and the request is
   counted against the user's budget → `Admission` (the `X-RateLimit-*` headers) or 429.

Feed URLs carry their credential in the path (feed readers send no headers):
`authenticate_feed(token, client)` takes the same steps with a feed token, and answers 404 for
an unknown, replaced or deactivated account's token alike, counted as a failed attempt.

Refusals are the errors of `torale.errors` (401, 403, 404, 429, 503), in the documented shape.
Only `admit` counts, so the list fast path can look the caller and the page up first and admit
only a request it answers: one it hands on to the route is counted once, by the route.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import uuid
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from torale.auth import feed_tokens, service
from torale.auth.jwt import JWTVerifier
from torale.auth.keys import hash_api_key, looks_like_api_key
from torale.auth.lookup import AuthenticatedUser, KeyLookup
from torale.auth.usage import KeyUsageRecorder
from torale.db.database import session_scope
from torale.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from torale.ratelimit import RateLimiter

MISSING_CREDENTIALS = "Missing credentials: send `Authorization: Bearer <API key>`"
INVALID_KEY = "Invalid or revoked API key"
FEED_NOT_FOUND = "Feed not found"


# Tuples: made on every request, and a tuple is made several times faster than a frozen
# dataclass.
class Caller(NamedTuple):
    user: AuthenticatedUser
    api_key_id: uuid.UUID | None  # None for identity-provider tokens


class Admission(NamedTuple):
    """An admitted request: its caller and the `X-RateLimit-*` headers for its response (none
    while the counter store is unreachable)."""

    caller: Caller
    rate_limit_headers: list[tuple[bytes, bytes]]

    @property
    def user(self) -> AuthenticatedUser:
        return self.caller.user


def bearer_credential(scope: Scope) -> str | None:
    """The credential of an `Authorization: Bearer …` header; None without one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            credential = credential.strip()
            return credential if scheme.lower() == "bearer" and credential else None
    return None


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


@functools.lru_cache(maxsize=4096)
def client_identity(address: str | None) -> str | None:
    """Whose failures count together: the address, or its /64 for IPv6 (one host commonly
    holds a whole /64, so single addresses would cost nothing to change)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address (a Unix socket, a test client): taken as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Authenticator:
    """What authentication needs from the process, and the one path through it."""

    def __init__(
        self,
        *,
        key_lookup: KeyLookup,
        hashing_key: bytes,
        key_usage: KeyUsageRecorder,
        rate_limiter: RateLimiter,
        jwt: JWTVerifier | None,
        role_claim: str | None,
        sessions: async_sessionmaker[AsyncSession],
        write_lock: asyncio.Lock | None,
    ) -> None:
        self.key_lookup = key_lookup
        self.hashing_key = hashing_key
        self.key_usage = key_usage
        self.rate_limiter = rate_limiter
        self.jwt = jwt
        self.role_claim = role_claim
        self.sessions = sessions
        self.write_lock = write_lock

    async def authenticate(self, credential: str | None, client: str | None) -> Admission:
        """The caller of a request, checked and counted; raises the refusal."""
        self.check_client(client)
        try:
            caller = await self.identify(credential)
        except AuthenticationError:
            await self._failed(credential, client)
            raise
        return await self.admit(caller)

    async def sign_in_claims(self, credential: str | None, client: str | None) -> dict[str, Any]:
        """The verified claims of an identity-provider token, for the routes that take only
        those (sign-in); the same throttle and failure counting as `authenticate`."""
        self.check_client(client)
        try:
            if credential is not None and looks_like_api_key(credential):
                await self.identify(credential)  # an unknown key is still a 401
                raise PermissionDeniedError("This route takes a sign-in token, not an API key")
            return await self._claims(credential)
        except AuthenticationError:
            await self._failed(credential, client)
            raise

    async def authenticate_feed(self, token: str, client: str | None) -> AuthenticatedUser:
        """The owner of a feed URL's token, counted against their budget like any of their
        requests. An unknown or replaced token and a deactivated account's are the same 404
        (a URL tells nothing of whether it ever worked) and count as failed attempts of the
        client's address, past whose budget the answer is 429."""
        self.check_client(client)
        async with session_scope(self.sessions) as session:
            user = await feed_tokens.owner(session, token=token, hashing_key=self.hashing_key)
        if user is None:
            await self._failed(token, client)
            raise NotFoundError(FEED_NOT_FOUND)
        owner = AuthenticatedUser.from_user(user)
        await self.admit(Caller(owner, None))
        return owner

    def check_client(self, client: str | None) -> None:
        """429 for an address past its budget of failed attempts."""
        if not self.rate_limiter.blocking:
            return  # no address is refused in this process: the common case, no work
        identity = client_identity(client)
        refused = self.rate_limiter.blocked(identity) if identity is not None else None
        if refused is not None:
            raise refused.failure_refusal()

    async def identify(self, credential: str | None) -> Caller:
        """Who the credential belongs to (401 if nobody). Nothing is counted."""
        if not credential:
            raise AuthenticationError(MISSING_CREDENTIALS)
        if not looks_like_api_key(credential):
            return await self._from_token(credential)
        # The API-key path is the hot one: no further coroutine in between.
        owner = await self.key_lookup.find(hash_api_key(credential, self.hashing_key))
        if owner is None or owner.revoked:
            raise AuthenticationError(INVALID_KEY)
        return Caller(owner.user, owner.key_id)

    async def admit(self, caller: Caller) -> Admission:
        """Record the key's use, refuse a deactivated account (403), count the request against
        the user's budget (429 past it)."""
        if caller.api_key_id is not None:
            self.key_usage.record(caller.api_key_id)
        if not caller.user.is_active:
            raise PermissionDeniedError("This account is deactivated")
        # Per user, not per key: making more keys must not make more budget.
        result = await self.rate_limiter.hit(f"user:{caller.user.id}")
        if result is None:
            return Admission(caller, [])
        if not result.allowed:
            raise result.refusal()
        return Admission(caller, result.raw_headers())

    async def _failed(self, credential: str | None, client: str | None) -> None:
        """Count a failed attempt of the client's address; past the budget, 429 instead."""
        identity = client_identity(client)
        if not credential or identity is None:
            return  # no credential is no attempt
        result = await self.rate_limiter.hit_failure(identity)
        if result is not None and not result.allowed:
            raise result.failure_refusal() from None

    async def _claims(self, credential: str | None) -> dict[str, Any]:
        if not credential:
            raise AuthenticationError(MISSING_CREDENTIALS)
        if self.jwt is None:
            raise AuthenticationError(
                "Invalid API key (sign-in tokens are not enabled on this server)"
            )
        return await self.jwt.verify(credential)

    async def _from_token(self, credential: str) -> Caller:
        claims = await self._claims(credential)
        async with session_scope(self.sessions) as session:
            user = await service.get_user_by_subject(session, subject=str(claims["sub"]))
        needs_role = (
            user is not None
            and self.role_claim is not None
            and user.role != service.claimed_role(claims, self.role_claim)
        )
        if user is None or needs_role:
            # First sight of this subject, or its role changed: a write, under the write lock.
            async with session_scope(self.sessions, self.write_lock) as session:
                user, _ = await service.sync_user_from_claims(session, claims=claims, update=False)
                await service.apply_role_claim(
                    session, user=user, claims=claims, path=self.role_claim
                )
        return Caller(AuthenticatedUser.from_user(user), None)
