"""Sign-in with an OpenID Connect provider: the authorization code flow with PKCE (S256).

Authlib supplies the protocol: the authorization request, the token request and the client's
authentication at the token endpoint, and the ID token's claim rules (`CodeIDToken`: iss, aud,
exp, iat, nonce, azp, at_hash); its JOSE library, joserfc, checks the signature against the
provider's JWKS. Every request to the provider goes through the outbound policy's guarded client
(`OutboundPolicy.from_settings(settings, purpose="identity")`, which trusts the issuer's host
because the operator named it). The pages (`web/oidc.py`) keep a flow's secrets between the
two legs, and make the user and the session from the claims this returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

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

DISCOVERY_PATH = "/.well-known/openid-configuration"
# One request to the provider, all of it (connect, send, read).
TIMEOUT_SECONDS = 10.0
# Discovery documents, key sets and token answers are small; a larger answer is not one.
MAX_ANSWER_BYTES = 256 * 1024
# Clock skew allowed on exp, iat and nbf.
LEEWAY_SECONDS = 60
# Signature algorithms an ID token may use: public-key ones only (never `none`, never HMAC).
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class OidcError(Exception):
    """A sign-in that did not happen. The text is for the log; pages say it in their words."""


class ProviderUnavailableError(OidcError):
    """The provider could not be reached, answered with an error, or refused by the policy."""


class CodeRefusedError(OidcError):
    """The token endpoint refused the code: used already, expired, a PKCE verifier that does
    not match, or a client the provider does not accept."""


class InvalidIdTokenError(OidcError):
    """The ID token is not one to trust: signature, issuer, audience, expiry or nonce."""


@dataclass(frozen=True, slots=True)
class Flow:
    """One sign-in's secrets, kept from the redirect to the provider until it sends the browser
    back: `state` ties the answer to this browser, `nonce` the ID token to this request, and
    the PKCE `code_verifier` the code to whoever asked for it."""

    state: str
    nonce: str
    code_verifier: str  # 43 characters of the URL-safe alphabet (RFC 7636 allows 43-128)

    @classmethod
    def new(cls) -> Flow:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(32))


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the discovery document says, checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    algorithms: tuple[str, ...]
    auth_methods: tuple[str, ...] | None  # token_endpoint_auth_methods_supported, if given


def _strings(value: object) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


class OidcProvider:
    """One configured provider: discovery and keys cached for `cache_seconds`."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        scopes: str,
        policy: OutboundPolicy,
        cache_seconds: int,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self.policy = policy
        self.cache_seconds = cache_seconds
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = float("-inf")
        self._keys: KeySet | None = None
        self._keys_at = float("-inf")

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcProvider | None:
        if not settings.oidc_enabled:
            return None
        assert settings.oidc_issuer is not None
        assert settings.oidc_client_id is not None
        secret = settings.oidc_client_secret
        return cls(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            scopes=settings.oidc_scopes,
            policy=OutboundPolicy.from_settings(settings, purpose="identity"),
            cache_seconds=settings.jwks_cache_seconds,
        )

    # --- the two legs ---------------------------------------------------------------------

    async def authorization_url(self, flow: Flow, *, redirect_uri: str) -> str:
        """Where to send the browser to sign in."""
        metadata = await self.metadata()
        url: str = prepare_grant_uri(
            metadata.authorization_endpoint,
            client_id=self.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=self.scopes,
            state=flow.state,
            nonce=flow.nonce,
            code_challenge=create_s256_code_challenge(flow.code_verifier),
            code_challenge_method="S256",
        )
        return url

    async def sign_in(self, *, code: str, flow: Flow, redirect_uri: str) -> dict[str, Any]:
        """Exchange the code and return the verified claims of the ID token (with the userinfo
        endpoint's, when the ID token carries no email)."""
        metadata = await self.metadata()
        tokens = await self._exchange(metadata, code=code, flow=flow, redirect_uri=redirect_uri)
        id_token = tokens.get("id_token")
        access_token = tokens.get("access_token")
        if not isinstance(id_token, str):
            raise InvalidIdTokenError("the token endpoint sent no ID token")
        claims = await self._verify(
            metadata,
            id_token,
            nonce=flow.nonce,
            access_token=access_token if isinstance(access_token, str) else None,
        )
        if "email" not in claims and metadata.userinfo_endpoint and isinstance(access_token, str):
            info = await self._get_json(
                metadata.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
            )
            if info.get("sub") != claims["sub"]:
                raise InvalidIdTokenError("the userinfo endpoint answered for another subject")
            for name, value in info.items():
                claims.setdefault(name, value)
        return claims

    # --- discovery and keys ---------------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is not None and time.monotonic() - self._metadata_at < self.cache_seconds:
            return self._metadata
        document = await self._get_json(self.issuer.rstrip("/") + DISCOVERY_PATH)
        self._metadata = self._checked_metadata(document)
        self._metadata_at = time.monotonic()
        return self._metadata

    def _checked_metadata(self, document: Mapping[str, Any]) -> ProviderMetadata:
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer.rstrip("/"):
            raise ProviderUnavailableError(
                f"the discovery document names issuer {issuer!r}, not {self.issuer!r}"
            )
        endpoints: dict[str, str | None] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
            value = document.get(name)
            if value is None and name == "userinfo_endpoint":
                endpoints[name] = None
                continue
            schemes = ("http://", "https://") if self.policy.allow_http else ("https://",)
            if not isinstance(value, str) or not value.startswith(schemes):
                raise ProviderUnavailableError(f"the discovery document has no usable {name}")
            endpoints[name] = value
        offered = _strings(document.get("id_token_signing_alg_values_supported")) or ("RS256",)
        algorithms = tuple(alg for alg in offered if alg in ASYMMETRIC)
        if not algorithms:
            raise ProviderUnavailableError(f"no ID token algorithm Torale accepts in {offered}")
        return ProviderMetadata(
            issuer=issuer,
            authorization_endpoint=str(endpoints["authorization_endpoint"]),
            token_endpoint=str(endpoints["token_endpoint"]),
            jwks_uri=str(endpoints["jwks_uri"]),
            userinfo_endpoint=endpoints["userinfo_endpoint"],
            algorithms=algorithms,
            auth_methods=_strings(document.get("token_endpoint_auth_methods_supported")),
        )

    async def _key_set(self, metadata: ProviderMetadata, *, refresh: bool = False) -> KeySet:
        fresh = time.monotonic() - self._keys_at < self.cache_seconds
        if self._keys is not None and fresh and not refresh:
            return self._keys
        document = await self._get_json(metadata.jwks_uri)
        try:
            self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, KeyError, TypeError, ValueError) as exc:
            raise ProviderUnavailableError(f"the provider's JWKS is not usable: {exc}") from None
        self._keys_at = time.monotonic()
        return self._keys

    # --- the token endpoint and the ID token ----------------------------------------------

    def _auth_method(self, metadata: ProviderMetadata) -> str:
        if self.client_secret is None:
            return "none"  # a public client: the client_id in the body, PKCE protects the code
        supported = metadata.auth_methods
        if supported is None or "client_secret_basic" in supported:
            return "client_secret_basic"
        if "client_secret_post" in supported:
            return "client_secret_post"
        return "client_secret_basic"

    async def _exchange(
        self, metadata: ProviderMetadata, *, code: str, flow: Flow, redirect_uri: str
    ) -> dict[str, Any]:
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=flow.code_verifier,
        )
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        auth = ClientAuth(self.client_id, self.client_secret, self._auth_method(metadata))
        url, headers, body = auth.prepare("POST", metadata.token_endpoint, headers, body)
        status, answer = await self._request("POST", url, headers=headers, content=body)
        tokens = _json_object(answer)
        if status < 500 and tokens is not None and isinstance(tokens.get("error"), str):
            raise CodeRefusedError(f"the token endpoint answered {status}: {tokens['error']}")
        if status != 200 or tokens is None:
            raise ProviderUnavailableError(f"the token endpoint answered {status}")
        return tokens

    async def _verify(
        self, metadata: ProviderMetadata, id_token: str, *, nonce: str, access_token: str | None
    ) -> dict[str, Any]:
        keys = await self._key_set(metadata)
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=metadata.algorithms)
            except InvalidKeyIdError:
                # A key the provider has rotated in since we fetched the set: fetch it again.
                keys = await self._key_set(metadata, refresh=True)
                token = jwt.decode(id_token, keys, algorithms=metadata.algorithms)
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "values": [metadata.issuer]},
                    "aud": {"essential": True, "values": [self.client_id]},
                    "sub": {"essential": True},
                },
                {"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
            )
            claims.validate(leeway=LEEWAY_SECONDS)
        except JoseError as exc:
            raise InvalidIdTokenError(f"the ID token was refused: {exc!r}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or text_problem(subject):
            raise InvalidIdTokenError("the ID token's subject is not storable text")
        return dict(claims)

    # --- HTTP, through the outbound policy --------------------------------------------------

    async def _get_json(
        self, url: str, *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        status, answer = await self._request("GET", url, headers=headers)
        document = _json_object(answer)
        if status != 200 or document is None:
            raise ProviderUnavailableError(f"GET {_where(url)} answered {status}")
        return document

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: str | None = None,
    ) -> tuple[int, bytes]:
        try:
            async with (
                asyncio.timeout(TIMEOUT_SECONDS),
                guarded_client(self.policy, timeout=TIMEOUT_SECONDS, max_redirects=3) as client,
                client.stream(
                    method,
                    url,
                    headers=headers,
                    content=content,
                    # Discovery and keys may move (each hop checked again); a code never does.
                    follow_redirects=method == "GET",
                ) as response,
            ):
                return response.status_code, await read_limited(response, MAX_ANSWER_BYTES)
        except UnsafeURLError as exc:
            logger.warning("identity provider request to %s refused: %s", _where(url), exc.detail)
            raise ProviderUnavailableError(f"{_where(url)}: {exc.refusal}") from None
        except (httpx.HTTPError, ResponseTooLargeError, TimeoutError) as exc:
            raise ProviderUnavailableError(f"{method} {_where(url)}: {exc!r}") from None


def _json_object(answer: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(answer)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _where(url: str) -> str:
    """A URL as a log line may show it: without its query."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None))
