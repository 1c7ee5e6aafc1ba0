"""Verify OIDC JWTs (Clerk and others): RS256 against the provider's JWKS, iss/aud/exp checked.

The key set is fetched through the outbound policy (`OutboundPolicy.from_settings(settings,
purpose="jwks")`: the JWKS URL's host is trusted by name, as the operator configured it; a
redirect elsewhere is judged like any URL), within one deadline and a size limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from torale.errors import AuthenticationError, ServiceUnavailableError
from torale.inputs import text_problem
from torale.net import (
    OutboundPolicy,
    ResponseTooLargeError,
    UnsafeURLError,
    guarded_client,
    read_limited,
)

if TYPE_CHECKING:
    from torale.config import Settings

logger = logging.getLogger("torale.auth")

# An unknown `kid` makes us refetch the key set, but not more often than this.
_MIN_REFETCH_SECONDS = 30.0
# One fetch of the key set, all of it (connect, redirects, send, read).
TIMEOUT_SECONDS = 10.0
# A key set is a few KB; a larger answer is not one.
MAX_ANSWER_BYTES = 256 * 1024


class JWKSFetchError(Exception):
    """The key set could not be fetched or read; the text says why (for the log)."""


class JWTVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        policy: OutboundPolicy,
        audience: str | None,
        cache_seconds: int,
        leeway_seconds: int = 5,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.policy = policy
        self.audience = audience
        self.cache_seconds = cache_seconds
        self.leeway_seconds = leeway_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> JWTVerifier | None:
        if not settings.jwt_enabled:
            return None
        assert settings.jwt_issuer
        assert settings.jwt_jwks_url
        return cls(
            issuer=settings.jwt_issuer,
            jwks_url=settings.jwt_jwks_url,
            policy=OutboundPolicy.from_settings(settings, purpose="jwks"),
            audience=settings.jwt_audience,
            cache_seconds=settings.jwks_cache_seconds,
        )

    async def _download(self) -> bytes:
        try:
            async with (
                asyncio.timeout(TIMEOUT_SECONDS),
                guarded_client(self.policy, timeout=TIMEOUT_SECONDS, max_redirects=3) as client,
                client.stream("GET", self.jwks_url) as response,
            ):
                if response.status_code != 200:
                    raise JWKSFetchError(f"answered HTTP {response.status_code}")
                return await read_limited(response, MAX_ANSWER_BYTES)
        except UnsafeURLError as exc:
            raise JWKSFetchError(exc.detail) from None  # the address: for the operator's log
        except ResponseTooLargeError as exc:
            raise JWKSFetchError(str(exc)) from None
        except TimeoutError:
            raise JWKSFetchError(f"no answer within {TIMEOUT_SECONDS:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise JWKSFetchError(repr(exc)) from None

    async def _fetch(self) -> None:
        body = await self._download()
        try:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            key_set = jwt.PyJWKSet.from_dict(document)
        except (ValueError, jwt.PyJWTError) as exc:
            raise JWKSFetchError(f"not a usable key set: {exc}") from None
        self._keys = {key.key_id: key for key in key_set.keys if key.key_id}
        self._fetched_at = time.monotonic()

    async def _signing_key(self, kid: str) -> jwt.PyJWK:
        if kid in self._keys and time.monotonic() - self._fetched_at < self.cache_seconds:
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at >= self.cache_seconds
            # Throttle on attempts, not successes: while the provider is down, neither made-up
            # kids nor an expired cache may turn every request into an outbound fetch.
            due = now - self._attempted_at >= min(_MIN_REFETCH_SECONDS, self.cache_seconds)
            if (stale or kid not in self._keys) and due:
                self._attempted_at = now
                try:
                    await self._fetch()
                except JWKSFetchError as exc:
                    # Keep the keys we have: a provider outage must not sign everyone out.
                    logger.warning("could not fetch JWKS from %s: %s", self.jwks_url, exc)
        if not self._keys:
            raise ServiceUnavailableError(
                "Cannot verify sign-in tokens right now: the identity provider's keys are "
                "unreachable"
            )
        key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError("Token signed with an unknown key")
        return key

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("Malformed token") from None
        if header.get("alg") != "RS256":
            raise AuthenticationError("Unsupported token algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthenticationError("Token has no key id")
        key = await self._signing_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_seconds,
                options={
                    "require": ["exp", "iss", "sub"],
                    "verify_aud": self.audience is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Token has expired") from None
        except jwt.PyJWTError:
            raise AuthenticationError("Invalid token") from None
        if not isinstance(claims["sub"], str) or text_problem(claims["sub"]):
            raise AuthenticationError("Invalid token")  # not a subject the database can hold
        return claims
