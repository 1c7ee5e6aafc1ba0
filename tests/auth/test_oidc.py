"""The OpenID Connect client (auth/oidc.py) against a real local provider: discovery, PKCE, the
client's authentication, key rotation, and the ID tokens it must not trust. The pages around it
are tested in tests/web/test_oidc.py."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.jwks import (  # noqa: F401 - the provider's keys, as fixtures here
    SigningKey,
    hs256_token_with_public_key,
    key_a,
    key_b,
    unsigned_token,
)
from tests.fixtures.oidc_provider import (  # noqa: F401 - the provider, as a fixture here
    OpenIDProvider,
    oidc_provider,
)
from torale.auth.oidc import (
    CodeRefusedError,
    Flow,
    InvalidIdTokenError,
    OidcProvider,
    ProviderUnavailableError,
)
from torale.config import Settings

REDIRECT_URI = "http://torale.test/signin/oidc/callback"


@pytest.fixture
def client(oidc_provider: OpenIDProvider) -> OidcProvider:
    oidc_provider.redirect_uris = [REDIRECT_URI]
    settings = Settings(_env_file=None, **oidc_provider.settings())
    made = OidcProvider.from_settings(settings)
    assert made is not None
    return made


async def _code(client: OidcProvider, provider: OpenIDProvider, flow: Flow) -> str:
    url = await client.authorization_url(flow, redirect_uri=REDIRECT_URI)
    back = await provider.visit(url)
    return parse_qs(urlsplit(back).query)["code"][0]


async def _sign_in(client: OidcProvider, provider: OpenIDProvider) -> dict[str, Any]:
    flow = Flow.new()
    code = await _code(client, provider, flow)
    return await client.sign_in(code=code, flow=flow, redirect_uri=REDIRECT_URI)


def test_off_unless_configured() -> None:
    assert OidcProvider.from_settings(Settings(_env_file=None)) is None


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"oidc_issuer": "https://idp.example"}, "TORALE_OIDC_CLIENT_ID"),
        ({"oidc_issuer": "idp.example", "oidc_client_id": "t"}, "full URL"),
        ({"oidc_issuer": "https://idp.example?x=1", "oidc_client_id": "t"}, "no query"),
        (
            {"oidc_issuer": "https://a.example", "oidc_client_id": "t", "oidc_scopes": "email"},
            "openid",
        ),
        (
            {
                "oidc_issuer": "https://a.example",
                "oidc_client_id": "t",
                "jwt_issuer": "https://b.example",
                "jwt_jwks_url": "https://b.example/jwks",
            },
            "same provider",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused(values: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_the_button_names_the_issuer_host_by_default() -> None:
    settings = Settings(_env_file=None, oidc_issuer="https://sso.example.com/", oidc_client_id="t")
    assert settings.oidc_display_name == "sso.example.com"
    settings.oidc_name = "Acme SSO"
    assert settings.oidc_display_name == "Acme SSO"


async def test_the_authorization_request_carries_pkce_and_the_nonce(
    client: OidcProvider, oidc_provider: OpenIDProvider
) -> None:
    flow = Flow.new()
    url = await client.authorization_url(flow, redirect_uri=REDIRECT_URI)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    digest = hashlib.sha256(flow.code_verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert (query["state"], query["nonce"]) == (flow.state, flow.nonce)
    assert flow.code_verifier not in url


async def test_verified_claims_and_cached_discovery(
    client: OidcProvider, oidc_provider: OpenIDProvider
) -> None:
    claims = await _sign_in(client, oidc_provider)
    assert claims["sub"] == "idp-user-1"
    assert claims["email_verified"] is True
    await _sign_in(client, oidc_provider)
    assert oidc_provider.requests.count("GET /.well-known/openid-configuration") == 1
    assert oidc_provider.requests.count("GET /jwks") == 1


async def test_a_rotated_key_is_fetched(
    client: OidcProvider, oidc_provider: OpenIDProvider, key_b: SigningKey
) -> None:
    await _sign_in(client, oidc_provider)
    oidc_provider.key = key_b  # the provider signs with a new key and publishes only that one
    claims = await _sign_in(client, oidc_provider)
    assert claims["sub"] == "idp-user-1"
    assert oidc_provider.requests.count("GET /jwks") == 2


async def test_client_secret_post_when_basic_is_not_offered(
    client: OidcProvider, oidc_provider: OpenIDProvider
) -> None:
    oidc_provider.metadata_overrides = {
        "token_endpoint_auth_methods_supported": ["client_secret_post"]
    }
    await _sign_in(client, oidc_provider)
    request = oidc_provider.token_requests[0]
    assert request["authorization"] is None
    assert request["form"]["client_secret"] == oidc_provider.client_secret


async def test_a_wrong_client_secret_is_a_refused_code(
    client: OidcProvider, oidc_provider: OpenIDProvider
) -> None:
    client.client_secret = "not-the-secret"
    with pytest.raises(CodeRefusedError, match="invalid_client"):
        await _sign_in(client, oidc_provider)


@pytest.mark.parametrize(
    "forge", [hs256_token_with_public_key, unsigned_token], ids=["hs256-confusion", "alg-none"]
)
async def test_forged_id_tokens_are_refused(
    client: OidcProvider, oidc_provider: OpenIDProvider, key_a: SigningKey, forge: Any
) -> None:
    oidc_provider.id_token_value = forge(key_a, "idp-user-1")
    with pytest.raises(InvalidIdTokenError):
        await _sign_in(client, oidc_provider)


async def test_an_access_token_hash_that_does_not_match_is_refused(
    client: OidcProvider, oidc_provider: OpenIDProvider
) -> None:
    oidc_provider.id_token_overrides = {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}
    with pytest.raises(InvalidIdTokenError):
        await _sign_in(client, oidc_provider)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"issuer": "https://impostor.example"}, "names issuer"),
        ({"id_token_signing_alg_values_supported": ["HS256", "none"]}, "no ID token algorithm"),
        ({"authorization_endpoint": "javascript:alert(1)"}, "authorization_endpoint"),
        ({"jwks_uri": None}, "jwks_uri"),
    ],
)
async def test_a_discovery_document_that_cannot_be_used(
    client: OidcProvider, oidc_provider: OpenIDProvider, overrides: dict[str, Any], reason: str
) -> None:
    oidc_provider.metadata_overrides = overrides
    with pytest.raises(ProviderUnavailableError, match=reason):
        await client.authorization_url(Flow.new(), redirect_uri=REDIRECT_URI)


async def test_only_asymmetric_algorithms_are_kept(
    client: OidcProvider, oidc_provider: OpenIDProvider
) -> None:
    oidc_provider.metadata_overrides = {
        "id_token_signing_alg_values_supported": ["none", "HS256", "RS256", "ES256"]
    }
    assert (await client.metadata()).algorithms == ("RS256", "ES256")


async def test_an_unreachable_provider() -> None:
    # Port 9 (discard): nothing listens there.
    settings = Settings(_env_file=None, oidc_issuer="http://127.0.0.1:9", oidc_client_id="x")
    client = OidcProvider.from_settings(settings)
    assert client is not None
    with pytest.raises(ProviderUnavailableError):
        await client.metadata()
