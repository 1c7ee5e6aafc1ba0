"""Identity-provider (OIDC JWT) sign-in against a real JWKS server on 127.0.0.1 (docs/api.md §2).

The JWKS server is a stdlib ThreadingHTTPServer in a background thread: each test can swap the
key set it serves, make it fail, and count how often the API fetched it. Tokens are RS256 JWTs
signed with keys generated here. The verifier's monotonic clock is replaced by a fake one where a
test needs time to pass (cache expiry, the 30 s refetch throttle), so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

import torale.auth.jwt as jwt_module
from tests.fixtures.jwks import (  # noqa: F401 - fixtures used here
    AUDIENCE,
    ISSUER,
    JWKS_PATH,
    JWKSServer,
    SigningKey,
    b64url,
    bearer,
    claims_for,
    hs256_token_with_public_key,
    jwks_server,
    key_a,
    key_b,
    make_token,
    running_jwks_server,
    unsigned_token,
)
from tests.fixtures.users import ApiUser, set_user_active
from torale.db.models import ApiKey, User


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, jwks_server: JWKSServer) -> dict[str, Any]:
    """JWT sign-in against the test's JWKS server; indirect parametrisation merges changes."""
    overrides: dict[str, Any] = {
        "jwt_issuer": ISSUER,
        "jwt_jwks_url": jwks_server.url,
        "jwt_audience": AUDIENCE,
    }
    overrides.update(getattr(request, "param", {}))
    return overrides


class FakeClock(ModuleType):
    """Stands in for the `time` module inside torale.auth.jwt: `monotonic` is ours to move."""

    def __init__(self) -> None:
        super().__init__("time")
        self.now = 10_000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(jwt_module, "time", fake)
    return fake


# --- helpers -------------------------------------------------------------------------------


def error_detail(response: httpx.Response, status: int) -> str:
    """The documented error shape: exactly {"detail": "message"}, no stack trace."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict)
    assert list(body) == ["detail"]
    detail = body["detail"]
    assert isinstance(detail, str)
    assert detail
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    return detail


async def users_with_subject(app: FastAPI, subject: str) -> int:
    async with app.state.torale.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(User).where(User.clerk_user_id == subject)
        )
    return int(count or 0)


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/auth/me", headers=bearer(token))


async def sync(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/sync-user", headers=bearer(token))


# --- valid tokens --------------------------------------------------------------------------


async def test_valid_token_auto_provisions_the_user(
    client: httpx.AsyncClient, app: FastAPI, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_2abc", email="Jo.Doe@Example.com", first_name="Jo")
    assert await users_with_subject(app, "user_2abc") == 0

    response = await me(client, token)

    assert response.status_code == 200, response.text
    user = response.json()
    assert user["email"] == "jo.doe@example.com"
    assert user["first_name"] == "Jo"
    assert user["clerk_user_id"] == "user_2abc"
    assert user["role"] == "user"
    assert user["is_active"] is True
    uuid.UUID(user["id"])
    assert user["created_at"]
    assert await users_with_subject(app, "user_2abc") == 1

    again = await me(client, token)
    assert again.status_code == 200
    assert again.json()["id"] == user["id"]
    assert await users_with_subject(app, "user_2abc") == 1


async def test_given_name_is_used_when_first_name_is_absent(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_oidc", first_name=None, given_name="Ada")
    response = await sync(client, token)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["first_name"] == "Ada"


async def test_claims_that_cannot_be_stored_are_skipped(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    """A name or address with a NUL (PostgreSQL cannot store it) is ignored, not cleaned: a
    cleaned address could be another account's."""
    token = make_token(
        key_a,
        "user_nul",
        email="boss\x00@example.com",
        email_address="me@example.com",
        first_name="A\udfffda",
        given_name="Ada",
    )
    response = await sync(client, token)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert (user["email"], user["first_name"]) == ("me@example.com", "Ada")


@pytest.mark.parametrize("subject", ["user\x00x", "user\udfff"])
async def test_a_subject_that_cannot_be_stored_is_an_invalid_token(
    client: httpx.AsyncClient, key_a: SigningKey, subject: str
) -> None:
    response = await me(client, make_token(key_a, subject))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token"}


async def test_sync_user_creates_once_then_reports_existing(
    client: httpx.AsyncClient, app: FastAPI, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_sync", email="sync@example.com", first_name="Sam")

    first = await sync(client, token)
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"user", "created"}
    assert body["created"] is True
    assert body["user"]["email"] == "sync@example.com"
    assert body["user"]["first_name"] == "Sam"
    assert body["user"]["clerk_user_id"] == "user_sync"
    assert body["user"]["role"] == "user"

    second = await sync(client, token)
    assert second.status_code == 200, second.text
    assert second.json()["created"] is False
    assert second.json()["user"]["id"] == body["user"]["id"]
    assert await users_with_subject(app, "user_sync") == 1


async def test_sync_user_after_auto_provisioning_is_not_created(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_seen")
    user_id = (await me(client, token)).json()["id"]
    response = await sync(client, token)
    assert response.status_code == 200, response.text
    assert response.json()["created"] is False
    assert response.json()["user"]["id"] == user_id


async def test_sync_user_updates_email_and_first_name(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    old = make_token(key_a, "user_moves", email="old@example.com", first_name="Old")
    created = await sync(client, old)
    assert created.status_code == 200, created.text
    user_id = created.json()["user"]["id"]

    new = make_token(key_a, "user_moves", email="New@Example.com", first_name="New")
    updated = await sync(client, new)

    assert updated.status_code == 200, updated.text
    assert updated.json()["created"] is False
    assert updated.json()["user"]["id"] == user_id
    assert updated.json()["user"]["email"] == "new@example.com"
    assert updated.json()["user"]["first_name"] == "New"

    # The change was committed: a later request (with either token) sees it.
    current = await me(client, old)
    assert current.status_code == 200
    assert current.json()["email"] == "new@example.com"
    assert current.json()["first_name"] == "New"


async def test_concurrent_sync_user_creates_exactly_one_user(
    client: httpx.AsyncClient, app: FastAPI, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_racer", email="racer@example.com")

    responses = await asyncio.gather(*(sync(client, token) for _ in range(10)))

    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert sum(body["created"] for body in bodies) == 1
    assert len({body["user"]["id"] for body in bodies}) == 1
    assert await users_with_subject(app, "user_racer") == 1
    ids = {(await me(client, token)).json()["id"] for _ in range(3)}
    assert ids == {bodies[0]["user"]["id"]}


async def test_concurrent_first_requests_provision_exactly_one_user(
    client: httpx.AsyncClient, app: FastAPI, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_burst", email="burst@example.com")

    responses = await asyncio.gather(*(me(client, token) for _ in range(10)))

    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await users_with_subject(app, "user_burst") == 1


@pytest.mark.parametrize("settings_overrides", [{"jwt_audience": None}], indirect=True)
async def test_audience_is_not_checked_when_not_configured(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    for token in (
        make_token(key_a, "user_any_aud", aud="some-other-app"),
        make_token(key_a, "user_any_aud", aud=None),
    ):
        response = await me(client, token)
        assert response.status_code == 200, response.text
    # The issuer still is.
    error_detail(await me(client, make_token(key_a, "user_any_aud", iss="https://evil")), 401)


# --- rejected tokens -----------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


BadToken = Callable[[SigningKey, SigningKey], str]

BAD_TOKENS: dict[str, BadToken] = {
    "expired": lambda a, b: make_token(a, "user_bad", exp=_now() - 120, iat=_now() - 900),
    "wrong issuer": lambda a, b: make_token(a, "user_bad", iss="https://attacker.example"),
    "wrong audience": lambda a, b: make_token(a, "user_bad", aud="another-app"),
    "missing audience": lambda a, b: make_token(a, "user_bad", aud=None),
    "missing exp": lambda a, b: make_token(a, "user_bad", exp=None),
    "missing sub": lambda a, b: make_token(a, "user_bad", sub=None),
    "not yet valid": lambda a, b: make_token(a, "user_bad", nbf=_now() + 600),
    "other key, known kid": lambda a, b: make_token(b, "user_bad", kid=a.kid),
    "unknown kid": lambda a, b: make_token(a, "user_bad", kid="no-such-key"),
    "no kid": lambda a, b: jwt.encode(claims_for("user_bad"), a.private_key, algorithm="RS256"),
    "tampered payload": lambda a, b: _tampered(make_token(a, "user_bad")),
    "alg none": lambda a, b: unsigned_token(a, "user_bad"),
    "HS256 with shared secret": lambda a, b: jwt.encode(
        claims_for("user_bad"), "x" * 32, algorithm="HS256", headers={"kid": a.kid}
    ),
    "HS256 keyed with the public key": lambda a, b: hs256_token_with_public_key(a, "user_bad"),
    "garbage": lambda a, b: "not-a-jwt",
    "garbage segments": lambda a, b: "eyJhbGciOi.JSUzI1NiJ9.garbage",
    "short sk_ lookalike": lambda a, b: "sk_short",
    "RS256 signature stripped": lambda a, b: make_token(a, "user_bad").rsplit(".", 1)[0] + ".",
}


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "user_admin"
    return ".".join([header, b64url(json.dumps(claims).encode()), signature])


@pytest.mark.parametrize("make_bad", list(BAD_TOKENS.values()), ids=list(BAD_TOKENS))
async def test_invalid_tokens_get_401(
    client: httpx.AsyncClient,
    app: FastAPI,
    key_a: SigningKey,
    key_b: SigningKey,
    make_bad: BadToken,
) -> None:
    # Control: the server does accept good tokens, so the 401 below is about the token.
    assert (await me(client, make_token(key_a, "user_good"))).status_code == 200

    token = make_bad(key_a, key_b)
    for path in ("/auth/me", "/auth/sync-user", "/api/v1/tasks"):
        method = "POST" if path == "/auth/sync-user" else "GET"
        response = await client.request(method, path, headers=bearer(token))
        error_detail(response, 401)
    assert await users_with_subject(app, "user_bad") == 0
    assert await users_with_subject(app, "user_admin") == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic dTpw"}],
    ids=["no header", "empty header", "empty bearer", "basic auth"],
)
async def test_missing_credentials_get_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    error_detail(await client.get("/auth/me", headers=headers), 401)
    error_detail(await client.post("/auth/sync-user", headers=headers), 401)


async def test_sync_user_refuses_api_keys(client: httpx.AsyncClient, alice: ApiUser) -> None:
    error_detail(await client.post("/auth/sync-user", headers=alice.headers), 403)
    # The key itself is fine elsewhere.
    assert (await client.get("/auth/me", headers=alice.headers)).status_code == 200


@pytest.mark.parametrize(
    "settings_overrides", [{"jwt_issuer": None, "jwt_jwks_url": None}], indirect=True
)
async def test_tokens_get_401_when_jwt_is_disabled(
    client: httpx.AsyncClient, app: FastAPI, jwks_server: JWKSServer, key_a: SigningKey
) -> None:
    assert app.state.torale.jwt is None
    token = make_token(key_a, "user_disabled")
    error_detail(await me(client, token), 401)
    error_detail(await sync(client, token), 401)
    assert jwks_server.requests == 0
    assert await users_with_subject(app, "user_disabled") == 0


# --- the key cache -------------------------------------------------------------------------


async def test_keys_are_fetched_once_and_cached(
    client: httpx.AsyncClient, jwks_server: JWKSServer, key_a: SigningKey
) -> None:
    assert jwks_server.requests == 0
    # A cold start under concurrency still fetches once.
    tokens = [make_token(key_a, f"user_cache_{n}") for n in range(8)]
    responses = await asyncio.gather(*(me(client, token) for token in tokens))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    for token in tokens * 2:
        assert (await me(client, token)).status_code == 200
    assert jwks_server.requests == 1


async def test_key_rotation_refetches_and_accepts_the_new_key(
    client: httpx.AsyncClient,
    jwks_server: JWKSServer,
    clock: FakeClock,
    key_a: SigningKey,
    key_b: SigningKey,
) -> None:
    old_token = make_token(key_a, "user_rotating")
    new_token = make_token(key_b, "user_rotating")
    first = await me(client, old_token)
    assert first.status_code == 200, first.text
    assert jwks_server.requests == 1

    # The provider rotates: only the new key is published from now on.
    jwks_server.serve(key_b)
    clock.advance(31)
    response = await me(client, new_token)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == first.json()["id"]
    assert jwks_server.requests == 2
    for _ in range(5):
        assert (await me(client, new_token)).status_code == 200
    assert jwks_server.requests == 2
    # The retired key is gone from the refreshed key set.
    error_detail(await me(client, old_token), 401)


async def test_unknown_kids_refetch_at_most_every_30_seconds(
    client: httpx.AsyncClient,
    jwks_server: JWKSServer,
    clock: FakeClock,
    key_a: SigningKey,
    key_b: SigningKey,
) -> None:
    assert (await me(client, make_token(key_a, "user_flood"))).status_code == 200
    assert jwks_server.requests == 1

    # Made-up key ids cannot make the server hammer the provider.
    for n in range(10):
        error_detail(await me(client, make_token(key_a, "user_flood", kid=f"made-up-{n}")), 401)
        clock.advance(2)
    assert jwks_server.requests == 1

    # Once the window has passed, an unknown kid is looked up again (and found after rotation).
    jwks_server.serve(key_a, key_b)
    clock.advance(11)
    assert (await me(client, make_token(key_b, "user_flood"))).status_code == 200
    assert jwks_server.requests == 2
    assert (await me(client, make_token(key_a, "user_flood"))).status_code == 200
    assert jwks_server.requests == 2


async def test_cached_keys_expire_after_jwks_cache_seconds(
    client: httpx.AsyncClient,
    app: FastAPI,
    jwks_server: JWKSServer,
    clock: FakeClock,
    key_a: SigningKey,
    key_b: SigningKey,
) -> None:
    cache_seconds = app.state.torale.settings.jwks_cache_seconds
    token = make_token(key_a, "user_revoked_key")
    assert (await me(client, token)).status_code == 200
    assert jwks_server.requests == 1

    # The provider withdraws key A: it is still trusted until the cache expires...
    jwks_server.serve(key_b)
    clock.advance(cache_seconds - 10)
    assert (await me(client, token)).status_code == 200
    assert jwks_server.requests == 1

    # ...and not after.
    clock.advance(20)
    error_detail(await me(client, token), 401)
    assert jwks_server.requests == 2


async def test_jwks_outage_before_any_fetch_is_a_clean_error(
    client: httpx.AsyncClient,
    app: FastAPI,
    jwks_server: JWKSServer,
    clock: FakeClock,
    key_a: SigningKey,
) -> None:
    jwks_server.status = 500
    token = make_token(key_a, "user_outage")

    response = await me(client, token)

    assert response.status_code in (401, 503), response.text
    error_detail(response, response.status_code)
    assert jwks_server.requests >= 1
    assert await users_with_subject(app, "user_outage") == 0

    # When the provider is back, sign-in works again.
    jwks_server.status = 200
    clock.advance(31)
    assert (await me(client, token)).status_code == 200


async def test_failed_refetches_are_throttled_too(
    client: httpx.AsyncClient,
    jwks_server: JWKSServer,
    clock: FakeClock,
    key_a: SigningKey,
) -> None:
    """A failing JWKS endpoint must not be retried on every request with an unknown kid.

    The "at most every 30 s" rule is what stops tokens with made-up key ids from turning into
    one outbound request (with a 10 s timeout, under the verifier's lock) each.
    """
    good = make_token(key_a, "user_flaky")
    assert (await me(client, good)).status_code == 200
    assert jwks_server.requests == 1

    jwks_server.status = 500
    clock.advance(31)
    for n in range(5):
        error_detail(await me(client, make_token(key_a, "user_flaky", kid=f"made-up-{n}")), 401)
    assert jwks_server.requests == 2  # one failed attempt, not five

    # The keys fetched earlier still verify good tokens meanwhile.
    assert (await me(client, good)).status_code == 200


async def test_stale_keys_keep_working_during_an_outage_without_refetching_each_request(
    client: httpx.AsyncClient,
    app: FastAPI,
    jwks_server: JWKSServer,
    clock: FakeClock,
    key_a: SigningKey,
) -> None:
    good = make_token(key_a, "user_stale")
    assert (await me(client, good)).status_code == 200
    assert jwks_server.requests == 1

    jwks_server.status = 500
    clock.advance(app.state.torale.settings.jwks_cache_seconds + 1)
    for _ in range(5):
        assert (await me(client, good)).status_code == 200
    assert jwks_server.requests == 2  # one failed attempt, not one per request


# --- users behind tokens -------------------------------------------------------------------


async def test_deactivated_jwt_user_gets_403(
    client: httpx.AsyncClient, app: FastAPI, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_gone")
    response = await me(client, token)
    assert response.status_code == 200, response.text
    user_id = uuid.UUID(response.json()["id"])

    await set_user_active(app, user_id, False)

    error_detail(await me(client, token), 403)
    error_detail(await sync(client, token), 403)
    error_detail(await client.get("/auth/api-keys", headers=bearer(token)), 403)
    assert await users_with_subject(app, "user_gone") == 1

    await set_user_active(app, user_id, True)
    assert (await me(client, token)).status_code == 200


async def test_jwt_user_can_create_and_use_an_api_key(
    client: httpx.AsyncClient, app: FastAPI, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_keys")
    user_id = (await me(client, token)).json()["id"]

    created = await client.post("/auth/api-keys", headers=bearer(token), json={"name": "laptop"})

    assert created.status_code in (200, 201), created.text
    key = created.json()["key"]
    assert key.startswith("sk_")
    assert created.json()["key_info"]["name"] == "laptop"
    assert created.json()["key_info"]["key_prefix"] == key[:12]

    with_key = await client.get("/auth/me", headers=bearer(key))
    assert with_key.status_code == 200, with_key.text
    assert with_key.json()["id"] == user_id
    assert with_key.json()["clerk_user_id"] == "user_keys"

    listed = await client.get("/auth/api-keys", headers=bearer(token))
    assert listed.status_code == 200
    assert [item["name"] for item in listed.json()["items"]] == ["laptop"]
    async with app.state.torale.sessions() as session:
        owners = (await session.scalars(select(ApiKey.user_id))).all()
    assert [str(owner) for owner in owners] == [user_id]

    # The key is an API key, not a sign-in token: sync-user still wants the JWT.
    error_detail(await client.post("/auth/sync-user", headers=bearer(key)), 403)


async def test_subject_with_an_email_of_another_user_conflicts(
    client: httpx.AsyncClient, app: FastAPI, alice: ApiUser, key_a: SigningKey
) -> None:
    for email in ("alice@example.com", "Alice@Example.COM"):
        token = make_token(key_a, "user_impostor", email=email)
        error_detail(await sync(client, token), 409)
    assert await users_with_subject(app, "user_impostor") == 0

    # Nor does a plain request with that token sign in as Alice.
    response = await me(client, token)
    if response.status_code == 200:
        assert response.json()["id"] != str(alice.id)
    else:
        error_detail(response, 409)

    # Alice's account is untouched and not linked to the subject.
    mine = await client.get("/auth/me", headers=alice.headers)
    assert mine.status_code == 200
    assert mine.json()["id"] == str(alice.id)
    assert mine.json()["clerk_user_id"] is None


@pytest.mark.parametrize("verified", [None, False, "false", "yes", 1])
async def test_an_unverified_email_is_not_trusted(
    client: httpx.AsyncClient, app: FastAPI, alice: ApiUser, key_a: SigningKey, verified: Any
) -> None:
    # A squatter signed up at the provider with Alice's address, which nobody verified.
    squatter = make_token(key_a, "user_squat", email="alice@example.com", email_verified=verified)
    signed_in = await sync(client, squatter)
    assert signed_in.status_code == 200, signed_in.text
    body = signed_in.json()["user"]
    assert body["email"] is None  # the account is theirs by subject, with no address
    assert body["id"] != str(alice.id)
    # Alice keeps her account and her address.
    mine = await client.get("/auth/me", headers=alice.headers)
    assert (mine.json()["id"], mine.json()["email"]) == (str(alice.id), "alice@example.com")

    # An account with a verified address keeps it when a later token's is unverified.
    owner = make_token(key_a, "user_own", email="own@example.com")
    assert (await sync(client, owner)).json()["user"]["email"] == "own@example.com"
    unverified = make_token(key_a, "user_own", email="other@example.com", email_verified=verified)
    assert (await sync(client, unverified)).json()["user"]["email"] == "own@example.com"
    assert (await me(client, unverified)).json()["email"] == "own@example.com"


async def test_a_verified_email_as_the_string_true_is_trusted(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_str", email="Str@Example.com", email_verified="true")
    assert (await sync(client, token)).json()["user"]["email"] == "str@example.com"


async def test_changing_email_to_a_taken_one_conflicts(
    client: httpx.AsyncClient, alice: ApiUser, key_a: SigningKey
) -> None:
    original = make_token(key_a, "user_switch", email="switch@example.com")
    assert (await sync(client, original)).status_code == 200

    taken = make_token(key_a, "user_switch", email="alice@example.com")
    error_detail(await sync(client, taken), 409)

    current = await me(client, original)
    assert current.status_code == 200
    assert current.json()["email"] == "switch@example.com"


async def test_rate_limit_headers_on_jwt_responses(
    client: httpx.AsyncClient, key_a: SigningKey
) -> None:
    token = make_token(key_a, "user_limited")
    responses = [
        await sync(client, token),
        await me(client, token),
        await client.get("/auth/api-keys", headers=bearer(token)),
    ]
    remaining = []
    for response in responses:
        assert response.status_code == 200, response.text
        for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
            assert response.headers.get(header, "").isdigit(), (header, response.headers)
        assert int(response.headers["x-ratelimit-reset"]) >= int(time.time()) - 1
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
    limit = int(responses[0].headers["x-ratelimit-limit"])
    assert remaining == [limit - 1, limit - 2, limit - 3]


# --- fetching the key set, through the outbound policy --------------------------------------

UNAVAILABLE = "Cannot verify sign-in tokens right now: the identity provider's keys are unreachable"


async def test_the_key_set_host_is_trusted_by_name_like_the_operator_configured_it(
    client: httpx.AsyncClient, app: FastAPI, jwks_server: JWKSServer, key_a: SigningKey
) -> None:
    """127.0.0.1 is a loopback address, refused to the URLs users type; the JWKS URL's host is
    the operator's own configuration and is reached without TORALE_ALLOW_PRIVATE_NETWORKS."""
    settings = app.state.torale.settings
    assert not settings.allow_private_networks
    assert settings.allowed_network_list == ()
    assert app.state.torale.jwt.policy.trusted_hosts == {"127.0.0.1"}
    assert (await me(client, make_token(key_a, "user_local"))).status_code == 200
    assert jwks_server.requests == 1


@pytest.mark.parametrize(
    ("settings_overrides", "allowed"),
    [({}, False), ({"allowed_networks": "127.0.0.2/32"}, True)],
    ids=["private target refused", "target in TORALE_ALLOWED_NETWORKS"],
    indirect=["settings_overrides"],
)
async def test_a_redirect_to_another_private_address_is_judged_like_any_url(
    client: httpx.AsyncClient,
    app: FastAPI,
    jwks_server: JWKSServer,
    key_a: SigningKey,
    caplog: pytest.LogCaptureFixture,
    allowed: bool,
) -> None:
    """Only the JWKS URL's own host is trusted: its redirect to another private address (which
    serves a good key set) is refused unless the operator allowed that network."""
    with running_jwks_server("127.0.0.2", key_a) as elsewhere:
        jwks_server.redirect_to = elsewhere.url
        response = await me(client, make_token(key_a, "user_redirected"))
        fetched_elsewhere = elsewhere.requests

    assert jwks_server.requests == 1
    if allowed:
        assert response.status_code == 200, response.text
        assert fetched_elsewhere == 1
        return
    assert error_detail(response, 503) == UNAVAILABLE
    assert fetched_elsewhere == 0
    assert await users_with_subject(app, "user_redirected") == 0
    # The operator's log says why (with the address); the answer does not.
    assert "127.0.0.2 resolves to 127.0.0.2" in caplog.text
    assert "127.0.0.2" not in response.text


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "no length"])
async def test_an_oversized_key_set_is_refused_cleanly(
    client: httpx.AsyncClient,
    app: FastAPI,
    jwks_server: JWKSServer,
    clock: FakeClock,
    key_a: SigningKey,
    caplog: pytest.LogCaptureFixture,
    send_length: bool,
) -> None:
    """A key set padded past the limit (still valid JSON, and a good key set if read whole) is
    not read past the limit: the token cannot be verified (503), nothing is written."""
    jwks_server.padding = jwt_module.MAX_ANSWER_BYTES
    jwks_server.send_length = send_length
    token = make_token(key_a, "user_big")

    assert error_detail(await me(client, token), 503) == UNAVAILABLE
    assert jwks_server.requests == 1
    assert await users_with_subject(app, "user_big") == 0
    assert f"larger than {jwt_module.MAX_ANSWER_BYTES} bytes" in caplog.text

    # A key set of normal size loads at the next attempt.
    jwks_server.padding = 0
    clock.advance(31)
    assert (await me(client, token)).status_code == 200


async def test_an_oversized_refetch_keeps_the_keys_already_fetched(
    client: httpx.AsyncClient,
    jwks_server: JWKSServer,
    clock: FakeClock,
    key_a: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = make_token(key_a, "user_kept")
    assert (await me(client, good)).status_code == 200
    jwks_server.padding = jwt_module.MAX_ANSWER_BYTES
    clock.advance(31)
    # An unknown kid refetches, the answer is refused: the kid stays unknown (401) ...
    response = await me(client, make_token(key_a, "user_kept", kid="rotated"))
    assert error_detail(response, 401) == "Token signed with an unknown key"
    assert jwks_server.requests == 2
    assert f"larger than {jwt_module.MAX_ANSWER_BYTES} bytes" in caplog.text
    # ... and the keys fetched before still verify.
    assert (await me(client, good)).status_code == 200


async def test_fetching_the_key_set_has_one_deadline_for_all_of_it(
    client: httpx.AsyncClient,
    jwks_server: JWKSServer,
    key_a: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A provider that sends its key set in pieces, each well within the read timeout, is cut
    off at the deadline for the whole request (it would have sent a good key set in ~2 s)."""
    monkeypatch.setattr(jwt_module, "TIMEOUT_SECONDS", 0.5)
    jwks_server.drip_seconds = 0.2

    assert error_detail(await me(client, make_token(key_a, "user_slow")), 503) == UNAVAILABLE
    assert "no answer within 0.5 s" in caplog.text
