"""TORALE_JWT_ROLE_CLAIM: the identity provider decides who is an admin."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.jwks import (  # noqa: F401 - the JWKS server and keys, as fixtures here
    AUDIENCE,
    ISSUER,
    JWKSServer,
    SigningKey,
    bearer,
    jwks_server,
    key_a,
    make_token,
)


@pytest.fixture
def role_claim() -> str | None:
    return "public_metadata.role"


@pytest.fixture
def settings_overrides(jwks_server: JWKSServer, role_claim: str | None) -> dict[str, Any]:
    return {
        "jwt_issuer": ISSUER,
        "jwt_jwks_url": jwks_server.url,
        "jwt_audience": AUDIENCE,
        "jwt_role_claim": role_claim,
    }


async def test_the_claim_grants_and_takes_away_admin(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    admin_token = make_token(key_a, "boss", public_metadata={"role": "admin"})
    me = await client.get("/auth/me", headers=bearer(admin_token))
    assert me.json()["role"] == "admin"
    assert (await client.get("/admin/stats", headers=bearer(admin_token))).status_code == 200

    # The provider takes the role away: the next request is a plain user's.
    plain_token = make_token(key_a, "boss", public_metadata={"role": "member"})
    assert (await client.get("/admin/stats", headers=bearer(plain_token))).status_code == 403
    assert (await client.get("/auth/me", headers=bearer(plain_token))).json()["role"] == "user"

    # sync-user applies it too.
    synced = await client.post("/auth/sync-user", headers=bearer(admin_token))
    assert synced.json()["user"]["role"] == "admin"
    no_claim = make_token(key_a, "boss")
    assert (await client.post("/auth/sync-user", headers=bearer(no_claim))).json()["user"][
        "role"
    ] == "user"


@pytest.mark.parametrize("role_claim", [None])
async def test_without_the_setting_tokens_cannot_claim_admin(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    token = make_token(key_a, "sneaky", public_metadata={"role": "admin"})
    assert (await client.get("/auth/me", headers=bearer(token))).json()["role"] == "user"
    assert (await client.get("/admin/stats", headers=bearer(token))).status_code == 403
