"""API keys (docs/api.md §2): creation, format, hashing, listing, revocation, last_used_at."""

from __future__ import annotations

import re
import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.fixtures.services import TEST_SECRET
from tests.fixtures.users import ApiUser
from torale.auth.keys import hash_api_key
from torale.db.models import ApiKey

KEYS = "/auth/api-keys"


async def test_me(client: httpx.AsyncClient, alice: ApiUser) -> None:
    response = await client.get("/auth/me", headers=alice.headers)
    assert response.status_code == 200
    me = response.json()
    assert me["id"] == str(alice.id)
    assert me["email"] == "alice@example.com"
    assert me["role"] == "user"
    assert me["is_active"] is True
    assert me["created_at"].endswith(("Z", "+00:00"))


async def test_create_list_and_use_a_key(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    response = await client.post(KEYS, json={"name": " laptop "}, headers=alice.headers)
    assert response.status_code == 200, response.text
    created = response.json()
    key = created["key"]
    assert re.fullmatch(r"sk_[A-Za-z0-9_-]{43}", key)
    info = created["key_info"]
    assert info["name"] == "laptop"
    assert info["key_prefix"] == key[:12]
    assert info["is_active"] is True
    assert info["last_used_at"] is None

    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert me.json()["id"] == str(alice.id)

    listing = (await client.get(KEYS, headers=alice.headers)).json()
    assert listing["total"] == 2
    assert listing["items"][0]["id"] == info["id"]  # newest first
    assert all("key" not in item and "key_hash" not in item for item in listing["items"])
    assert key not in str(listing)


async def test_only_a_keyed_hash_is_stored(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    created = (await client.post(KEYS, json={"name": "x"}, headers=alice.headers)).json()
    key = created["key"]
    async with app.state.torale.database.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM api_keys"))).all()
    dump = repr(rows)
    assert key not in dump
    assert key[12:] not in dump  # not even the secret part
    async with app.state.torale.sessions() as session:
        row = await session.get(ApiKey, uuid.UUID(created["key_info"]["id"]))
    assert row is not None
    assert row.key_hash == hash_api_key(key, TEST_SECRET.encode())
    assert row.key_hash != hash_api_key(key, b"another-secret")


async def test_revoke(client: httpx.AsyncClient, alice: ApiUser) -> None:
    created = (await client.post(KEYS, json={"name": "temp"}, headers=alice.headers)).json()
    temp = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/auth/me", headers=temp)).status_code == 200
    response = await client.delete(f"{KEYS}/{created['key_info']['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"status": "revoked"}
    refused = await client.get("/auth/me", headers=temp)
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Invalid or revoked API key"}
    assert refused.headers["www-authenticate"] == "Bearer"
    listed = (await client.get(KEYS, headers=alice.headers)).json()["items"]
    assert [k["is_active"] for k in listed if k["id"] == created["key_info"]["id"]] == [False]
    again = await client.delete(f"{KEYS}/{created['key_info']['id']}", headers=alice.headers)
    assert again.status_code == 200
    # The key in use can revoke itself.
    own = (await client.get(KEYS, headers=alice.headers)).json()["items"][-1]["id"]
    assert (await client.delete(f"{KEYS}/{own}", headers=alice.headers)).status_code == 200
    assert (await client.get("/auth/me", headers=alice.headers)).status_code == 401


async def test_key_name_validation(client: httpx.AsyncClient, alice: ApiUser) -> None:
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 3}):
        response = await client.post(KEYS, json=body, headers=alice.headers)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == ["body", "name"]


async def test_unknown_key_id(client: httpx.AsyncClient, alice: ApiUser) -> None:
    missing = await client.delete(
        f"{KEYS}/00000000-0000-4000-8000-000000000000", headers=alice.headers
    )
    assert missing.status_code == 404
    assert missing.json() == {"detail": "API key not found"}
    malformed = await client.delete(f"{KEYS}/abc", headers=alice.headers)
    assert malformed.status_code == 422


async def test_last_used_is_batched_not_written_per_request(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    state = app.state.torale
    await state.key_usage.flush(state.sessions)  # start from nothing pending
    for _ in range(5):
        assert (await client.get("/auth/me", headers=alice.headers)).status_code == 200
    listed = (await client.get(KEYS, headers=alice.headers)).json()["items"][0]
    assert listed["last_used_at"] is None  # nothing written by the requests themselves
    assert await state.key_usage.flush(state.sessions) == 1  # one write for six uses
    listed = (await client.get(KEYS, headers=alice.headers)).json()["items"][0]
    assert listed["last_used_at"] is not None


async def test_malformed_authorization_headers(client: httpx.AsyncClient) -> None:
    for value in ("", "Bearer", "Bearer ", "Token sk_abc", "sk_abc", "Bearer sk_short"):
        response = await client.get("/auth/me", headers={"Authorization": value})
        assert response.status_code == 401, value
