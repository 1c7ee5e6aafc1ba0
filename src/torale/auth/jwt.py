"""Verify OIDC JWTs (Clerk and others): RS256 against the provider's JWKS, iss/aud/exp checked."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt

from torale.errors import AuthenticationError, ServiceUnavailableError
from torale.inputs import text_problem
from torale.net import default_tls

logger = logging.getLogger("torale.auth")

# An unknown `kid` makes us refetch the key set, but not more often than this.
_MIN_REFETCH_SECONDS = 30.0


class JWTVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        audience: str | None,
        cache_seconds: int,
        leeway_seconds: int = 5,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.audience = audience
        self.cache_seconds = cache_seconds
        self.leeway_seconds = leeway_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=10.0, verify=default_tls()) as client:
            response = await client.get(self.jwks_url)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
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
                except (httpx.HTTPError, jwt.PyJWTError, ValueError):
                    # Keep the keys we have: a provider outage must not sign everyone out.
                    logger.warning("could not fetch JWKS from %s", self.jwks_url, exc_info=True)
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
