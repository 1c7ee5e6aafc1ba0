"""Signing in with the identity provider: the whole authorization code flow with PKCE, from the
sign-in page through a real local OpenID provider (tests/fixtures/oidc_provider.py) and back,
against a real app; and every way it must refuse, with a page that says why and nothing
written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update

from tests.fixtures.jwks import (  # noqa: F401 - the provider's keys, as fixtures here
    SigningKey,
    bearer,
    key_a,
    key_b,
    make_token,
)
from tests.fixtures.oidc_provider import (  # noqa: F401 - the provider, as a fixture here
    CLIENT_ID,
    OpenIDProvider,
    oidc_provider,
)
from tests.fixtures.users import ApiUser
from tests.fixtures.web import BASE_URL
from torale.auth.oidc import Flow
from torale.db.models import User, WebSession
from torale.state import AppState
from torale.web.oidc import FLOW_COOKIE, seal

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def public_url() -> str:
    return BASE_URL


@pytest.fixture
def public_client() -> bool:
    """A client without a secret (PKCE alone)."""
    return False


@pytest.fixture
def with_jwt() -> bool:
    """The API accepts the same provider's sign-in tokens too (with a role claim)."""
    return False


@pytest.fixture
def settings_overrides(
    oidc_provider: OpenIDProvider, public_url: str, public_client: bool, with_jwt: bool
) -> dict[str, Any]:
    # No TORALE_ALLOWED_NETWORKS here: the provider on 127.0.0.1 is reached because its issuer
    # host is the operator's configuration, not because loopback is allowed.
    oidc_provider.redirect_uris = [public_url + "/signin/oidc/callback"]
    if public_client:
        oidc_provider.client_secret = None
    overrides = {"public_url": public_url, **oidc_provider.settings()}
    if with_jwt:
        overrides.update(
            jwt_issuer=oidc_provider.issuer,
            jwt_jwks_url=oidc_provider.url + "/jwks",
            jwt_audience=CLIENT_ID,
            jwt_role_claim="role",
        )
    return overrides


@pytest.fixture
async def browser(app: FastAPI, public_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=public_url
    ) as client:
        yield client


def _state(app: FastAPI) -> AppState:
    state: AppState = app.state.torale
    return state


async def _start(browser: httpx.AsyncClient, path: str = "/signin/oidc") -> str:
    """Click "Sign in with …": where the browser is sent."""
    response = await browser.get(path)
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def _sign_in(browser: httpx.AsyncClient, provider: OpenIDProvider) -> httpx.Response:
    """The whole flow: start, sign in at the provider, come back."""
    back = await provider.visit(await _start(browser))
    return await browser.get(back)


async def _count(app: FastAPI, model: type[User] | type[WebSession]) -> int:
    async with _state(app).sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _cookie(response: httpx.Response, name: str) -> str:
    return next(c for c in response.headers.get_list("set-cookie") if c.startswith(name + "="))


async def _assert_refused(app: FastAPI, response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert text in response.text
    assert "torale_session=" not in response.headers.get("set-cookie", "")
    assert await _count(app, WebSession) == 0


# --- the flow ---------------------------------------------------------------------------------


async def test_sign_in_with_the_provider(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    page = await browser.get("/signin")
    assert "Sign in with Test ID" in page.text
    assert 'href="/signin/oidc"' in page.text

    start = await browser.get("/signin/oidc")
    assert start.status_code == 303
    target = urlsplit(start.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == oidc_provider.url
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == BASE_URL + "/signin/oidc/callback"
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 43
    assert len(query["nonce"]) >= 43
    flow_cookie = _cookie(start, FLOW_COOKIE).lower()
    for flag in ("httponly", "samesite=lax", "path=/signin/oidc", "max-age=600"):
        assert flag in flow_cookie
    assert "secure" not in flow_cookie  # the public URL is http here

    back = await browser.get(await oidc_provider.visit(start.headers["location"]))
    assert (back.status_code, back.headers["location"]) == (303, "/")
    session_cookie = _cookie(back, "torale_session")
    assert "HttpOnly" in session_cookie
    assert "samesite=lax" in session_cookie.lower()
    assert "Secure" not in session_cookie
    assert f'{FLOW_COOKIE}=""' in back.headers["set-cookie"]  # the flow is over
    tasks = await browser.get("/tasks")
    assert tasks.status_code == 200
    assert "idp-user-1@idp.example.com" in tasks.text

    async with _state(app).sessions() as session:
        user = await session.scalar(select(User))
    assert user is not None
    assert (user.clerk_user_id, user.email, user.first_name) == (
        "idp-user-1",
        "idp-user-1@idp.example.com",
        "Jo",
    )
    # A confidential client authenticates with HTTP Basic and proves PKCE.
    request = oidc_provider.token_requests[0]
    assert request["authorization"].startswith("Basic ")
    assert "client_secret" not in request["form"]
    assert len(request["form"]["code_verifier"]) >= 43
    assert oidc_provider.refusals == []


async def test_sign_in_goes_back_to_the_page_asked_for(
    browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    page = await browser.get("/signin", params={"next": "/settings/webhooks"})
    assert 'href="/signin/oidc?next=/settings/webhooks"' in page.text.replace("%2F", "/")
    back = await oidc_provider.visit(await _start(browser, "/signin/oidc?next=/settings/webhooks"))
    response = await browser.get(back)
    assert response.headers["location"] == "/settings/webhooks"
    browser.cookies.delete("torale_session")
    evil = await oidc_provider.visit(await _start(browser, "/signin/oidc?next=//evil.example"))
    assert (await browser.get(evil)).headers["location"] == "/tasks"
    browser.cookies.delete("torale_session")
    long = await oidc_provider.visit(await _start(browser, "/signin/oidc?next=/" + "x" * 3000))
    assert (await browser.get(long)).headers["location"] == "/"


@pytest.mark.parametrize("public_url", ["https://torale.test"])
async def test_cookies_are_secure_when_the_public_url_is_https(
    browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    start = await browser.get("/signin/oidc")
    assert "secure" in _cookie(start, FLOW_COOKIE).lower()
    back = await browser.get(await oidc_provider.visit(start.headers["location"]))
    assert back.status_code == 303
    assert "Secure" in _cookie(back, "torale_session")
    assert (await browser.get("/tasks")).status_code == 200


@pytest.mark.parametrize("public_client", [True])
async def test_a_public_client_signs_in_with_pkce_alone(
    browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    response = await _sign_in(browser, oidc_provider)
    assert response.status_code == 303, response.text
    request = oidc_provider.token_requests[0]
    assert request["authorization"] is None
    assert request["form"]["client_id"] == CLIENT_ID
    assert "client_secret" not in request["form"]


async def test_the_email_may_come_from_the_userinfo_endpoint(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    oidc_provider.email_in_userinfo_only = True
    response = await _sign_in(browser, oidc_provider)
    assert response.status_code == 303, response.text
    assert "GET /userinfo" in oidc_provider.requests
    assert "idp-user-1@idp.example.com" in (await browser.get("/tasks")).text


@pytest.mark.parametrize("settings_overrides", [{"public_url": BASE_URL}])
async def test_without_a_provider_there_is_no_button_and_no_flow(
    browser: httpx.AsyncClient,
) -> None:
    page = await browser.get("/signin")
    assert "Sign in with" not in page.text
    assert (await browser.get("/signin/oidc")).status_code == 404
    assert (await browser.get("/signin/oidc/callback?code=x&state=y")).status_code == 404


# --- what is refused ----------------------------------------------------------------------------


async def test_an_answer_with_another_state_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    back = await oidc_provider.visit(await _start(browser))
    forged = back.replace("state=", "state=x")
    response = await browser.get(forged)
    await _assert_refused(app, response, 400, "does not belong to the sign-in started")
    assert oidc_provider.token_requests == []  # the code was never exchanged
    assert await _count(app, User) == 0


async def test_an_answer_without_the_flow_cookie_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    """Login CSRF: an attacker's own code and state, sent to someone else's browser."""
    back = await oidc_provider.visit(await _start(browser))
    browser.cookies.clear()
    response = await browser.get(back)
    await _assert_refused(app, response, 400, "expired or was started in another browser")
    assert oidc_provider.token_requests == []


@pytest.mark.parametrize("tamper", ["expired", "signature"])
async def test_an_expired_or_forged_flow_cookie_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider, tamper: str
) -> None:
    back = await oidc_provider.visit(await _start(browser))
    state = parse_qs(urlsplit(back).query)["state"][0]
    flow = Flow(state, "n" * 43, "v" * 43)
    key = _state(app).hashing_key
    value = (
        seal(flow, "/", key, now=1_000_000.0)
        if tamper == "expired"
        else seal(flow, "/", b"another server's key")
    )
    browser.cookies.set(FLOW_COOKIE, value, path="/signin/oidc")
    response = await browser.get(back)
    await _assert_refused(app, response, 400, "expired or was started in another browser")
    assert oidc_provider.token_requests == []


async def test_a_signed_in_browser_going_back_stays_signed_in(
    browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    back = await oidc_provider.visit(await _start(browser))
    assert (await browser.get(back)).status_code == 303
    again = await browser.get(back)  # the back button: the flow is over, the session is not
    assert (again.status_code, again.headers["location"]) == (303, "/")
    assert "torale_session" not in again.headers.get("set-cookie", "")
    start = await browser.get("/signin/oidc?next=/settings/api-keys")
    assert (start.status_code, start.headers["location"]) == (303, "/settings/api-keys")
    # A link that says the provider failed does not sign anyone out either.
    failed = await browser.get("/signin/oidc/callback", params={"error": "access_denied"})
    assert (failed.status_code, failed.headers["location"]) == (303, "/")
    assert (await browser.get("/tasks")).status_code == 200


async def test_a_code_works_once(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    start = await browser.get("/signin/oidc")
    flow_cookie = browser.cookies[FLOW_COOKIE]
    back = await oidc_provider.visit(start.headers["location"])
    assert (await browser.get(back)).status_code == 303
    assert await _count(app, WebSession) == 1

    # The same browser again, signed out: its flow is over.
    browser.cookies.delete("torale_session")
    again = await browser.get(back)
    assert again.status_code == 400
    # Someone who copied the URL and the flow cookie: the provider refuses the used code.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as thief:
        thief.cookies.set(FLOW_COOKIE, flow_cookie, path="/signin/oidc")
        replay = await thief.get(back)
    assert replay.status_code == 401
    assert "did not accept this sign-in" in replay.text
    assert oidc_provider.refusals == ["unknown or used code"]
    assert await _count(app, WebSession) == 1


async def test_a_code_taken_into_another_flow_fails_pkce(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    """A stolen code, brought back with the thief's own flow (state and verifier)."""
    victims_back = await oidc_provider.visit(await _start(browser))
    code = parse_qs(urlsplit(victims_back).query)["code"][0]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as thief:
        own = await oidc_provider.visit(await _start(thief))
        own_state = parse_qs(urlsplit(own).query)["state"][0]
        response = await thief.get(
            "/signin/oidc/callback", params={"code": code, "state": own_state}
        )
    await _assert_refused(app, response, 401, "did not accept this sign-in")
    assert oidc_provider.refusals == ["PKCE verification"]
    assert await _count(app, User) == 0


async def test_cancelled_at_the_provider(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    oidc_provider.deny = True
    response = await _sign_in(browser, oidc_provider)
    await _assert_refused(app, response, 401, "Signing in at Test ID was cancelled.")
    odd = await browser.get("/signin/oidc/callback", params={"error": "<script>x</script>"})
    assert odd.status_code == 401
    assert "<script>x" not in odd.text
    assert "Test ID did not sign you in (an error)" in odd.text


@pytest.mark.parametrize(
    "verified",
    [False, "false", None],
    ids=["false", "the-string-false", "missing"],
)
async def test_an_unverified_email_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider, verified: Any
) -> None:
    oidc_provider.sign_in_as("idp-user-2", email_verified=verified)
    response = await _sign_in(browser, oidc_provider)
    await _assert_refused(app, response, 403, "Test ID has not verified your email address")
    assert await _count(app, User) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"nonce": "another-sign-in"},
        {"nonce": None},
        {"aud": "another-client"},
        {"iss": "https://elsewhere.example"},
        {"exp": 1_000_000},
        {"sub": "nul\x00byte"},
    ],
    ids=["nonce-mismatch", "nonce-missing", "audience", "issuer", "expired", "bad-subject"],
)
async def test_an_id_token_that_does_not_verify_is_refused(
    app: FastAPI,
    browser: httpx.AsyncClient,
    oidc_provider: OpenIDProvider,
    overrides: dict[str, Any],
) -> None:
    oidc_provider.id_token_overrides = overrides
    response = await _sign_in(browser, oidc_provider)
    await _assert_refused(app, response, 401, "The answer from Test ID could not be verified")
    assert await _count(app, User) == 0


async def test_an_id_token_signed_with_a_key_the_provider_does_not_publish_is_refused(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider, key_b: SigningKey
) -> None:
    oidc_provider.sign_with = key_b
    response = await _sign_in(browser, oidc_provider)
    await _assert_refused(app, response, 401, "could not be verified")


async def test_a_provider_that_is_down_is_a_page_not_a_500(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    oidc_provider.status = 503
    response = await browser.get("/signin/oidc")
    await _assert_refused(app, response, 503, "Test ID cannot be reached right now")
    oidc_provider.status = 200
    location = await _start(browser)
    back = await oidc_provider.visit(location)
    oidc_provider.status = 503  # down between the two legs
    response = await browser.get(back)
    await _assert_refused(app, response, 503, "cannot be reached right now")
    assert await _count(app, User) == 0


async def test_endpoints_elsewhere_go_through_the_outbound_policy(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    """Only the issuer's host is trusted: a token endpoint the discovery document puts on
    another private host is refused before any connection."""
    port = urlsplit(oidc_provider.url).port
    oidc_provider.metadata_overrides = {"token_endpoint": f"http://localhost:{port}/token"}
    response = await _sign_in(browser, oidc_provider)
    await _assert_refused(app, response, 503, "cannot be reached right now")
    assert oidc_provider.token_requests == []


# --- the accounts, as /auth/sync-user makes them ---------------------------------------------


@pytest.mark.parametrize("with_jwt", [True])
async def test_the_account_is_the_one_sync_user_made(
    app: FastAPI,
    browser: httpx.AsyncClient,
    oidc_provider: OpenIDProvider,
    key_a: SigningKey,
) -> None:
    token = make_token(
        key_a, "idp-user-1", iss=oidc_provider.issuer, aud=CLIENT_ID, email="old@idp.example.com"
    )
    synced = await browser.post("/auth/sync-user", headers=bearer(token))
    assert synced.status_code == 200, synced.text
    user_id = synced.json()["user"]["id"]

    oidc_provider.sign_in_as("idp-user-1", email="New@IDP.example.com", role="admin")
    assert (await _sign_in(browser, oidc_provider)).status_code == 303
    assert await _count(app, User) == 1
    async with _state(app).sessions() as session:
        user = await session.get(User, uuid.UUID(user_id))
        assert user is not None
        # Updated from the verified claims, and the role claim applied, as sync-user does.
        assert (user.email, user.role) == ("new@idp.example.com", "admin")
    assert (await browser.get("/manage")).status_code == 200


async def test_a_verified_email_never_takes_over_another_account(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider, alice: ApiUser
) -> None:
    """Accounts are found by subject, never by email: alice's address at the provider does not
    make its holder alice here (sync-user answers 409 too)."""
    oidc_provider.sign_in_as("someone-else", email=alice.email)
    response = await _sign_in(browser, oidc_provider)
    await _assert_refused(app, response, 409, "already belongs to another account")
    assert await _count(app, User) == 1  # alice only


async def test_a_deactivated_account_is_refused_and_left_as_it_was(
    app: FastAPI, browser: httpx.AsyncClient, oidc_provider: OpenIDProvider
) -> None:
    assert (await _sign_in(browser, oidc_provider)).status_code == 303
    async with _state(app).sessions() as session:
        await session.execute(update(User).values(is_active=False))
        await session.execute(delete(WebSession))
        await session.commit()
    browser.cookies.clear()
    oidc_provider.sign_in_as("idp-user-1", email="changed@idp.example.com")
    response = await _sign_in(browser, oidc_provider)
    await _assert_refused(app, response, 403, "This account is deactivated")
    async with _state(app).sessions() as session:
        user = await session.scalar(select(User))
    assert user is not None
    assert user.email == "idp-user-1@idp.example.com"  # the refused sign-in wrote nothing
