"""`auth.authenticate`, called as a web-session cookie or an MCP endpoint would call it: with
the raw credential and the client's address, no HTTP request."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from tests.fixtures.users import ApiUser, set_user_active
from torale.auth.authenticate import Authenticator, client_identity
from torale.errors import AuthenticationError, PermissionDeniedError, RateLimitedError

ADDRESS = "192.0.2.10"


def authenticator(app: FastAPI) -> Authenticator:
    auth: Authenticator = app.state.torale.authenticator
    return auth


@pytest.mark.parametrize("settings_overrides", [{"rate_limits": "2/minute"}])
async def test_a_key_is_its_owner_counted_against_the_owners_budget(
    app: FastAPI, alice: ApiUser
) -> None:
    auth = authenticator(app)
    admitted = await auth.authenticate(alice.key, ADDRESS)
    assert admitted.user.id == alice.id
    assert admitted.caller.api_key_id is not None
    assert (b"x-ratelimit-remaining", b"1") in admitted.rate_limit_headers
    await auth.authenticate(alice.key, ADDRESS)
    with pytest.raises(RateLimitedError) as refused:
        await auth.authenticate(alice.key, ADDRESS)
    assert refused.value.detail == "Rate limit exceeded: 2 per 1 minute"
    assert refused.value.headers is not None
    assert {name.lower() for name in refused.value.headers} == {
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    }


async def test_refusals(app: FastAPI, alice: ApiUser) -> None:
    auth = authenticator(app)
    for credential in (None, "", "sk_" + "x" * 43, "not-a-key"):
        with pytest.raises(AuthenticationError):
            await auth.authenticate(credential, ADDRESS)
    await set_user_active(app, alice.id, False)
    with pytest.raises(PermissionDeniedError, match="deactivated"):
        await auth.authenticate(alice.key, ADDRESS)


async def test_identify_counts_nothing(app: FastAPI, alice: ApiUser) -> None:
    auth = authenticator(app)
    for _ in range(3):
        assert (await auth.identify(alice.key)).user.id == alice.id
    limiter = auth.rate_limiter
    assert await limiter.storage.get(limiter.items[0].key_for(f"user:{alice.id}")) == 0


@pytest.mark.parametrize("settings_overrides", [{"auth_failure_limits": "2/minute"}])
async def test_failures_of_one_ipv6_host_count_together(app: FastAPI, alice: ApiUser) -> None:
    auth = authenticator(app)
    bad = "sk_" + "y" * 43
    with pytest.raises(AuthenticationError):
        await auth.authenticate(bad, "2001:db8:1:2::1")
    with pytest.raises(AuthenticationError):
        await auth.authenticate(bad, "2001:db8:1:2::ffff")  # the same /64
    with pytest.raises(RateLimitedError, match="failed authentication"):
        await auth.authenticate(bad, "2001:db8:1:2:aaaa::3")
    with pytest.raises(RateLimitedError):
        await auth.authenticate(alice.key, "2001:db8:1:2::1")
    assert (await auth.authenticate(alice.key, "2001:db8:1:3::1")).user.id == alice.id


@pytest.mark.parametrize(
    ("address", "identity"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("testclient", "testclient"),
        (None, None),
        ("", None),
    ],
)
def test_client_identity(address: str | None, identity: str | None) -> None:
    assert client_identity(address) == identity
