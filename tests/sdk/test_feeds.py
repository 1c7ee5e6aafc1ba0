"""The SDK's feeds (sync and async) against the real server."""

from __future__ import annotations

import uuid

import httpx

from tests.fixtures.api_server import Api
from torale.sdk import Torale, ToraleAsync


def test_rotate_token_and_turn_off(api: Api, user_key: str) -> None:
    with Torale(api_key=user_key, api_url=api.url) as client:
        assert client.feeds.token().active is False
        created = client.feeds.rotate()
        assert created.token not in repr(created)
        task = uuid.uuid4()
        assert created.task_url(task) == created.task_url_template.replace("{task_id}", str(task))
        assert httpx.get(created.notifications_url, timeout=10).status_code == 200
        status = client.feeds.token()
        assert (status.active, status.created_at) == (True, created.created_at)
        assert client.feeds.turn_off().active is False
        assert httpx.get(created.notifications_url, timeout=10).status_code == 404


async def test_async_rotate(api: Api, user_key: str) -> None:
    async with ToraleAsync(api_key=user_key, api_url=api.url) as client:
        first = await client.feeds.rotate()
        second = await client.feeds.rotate()
        assert first.token != second.token
        assert (await client.feeds.token()).created_at == second.created_at
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(first.notifications_url)).status_code == 404
            assert (await http.get(second.notifications_url)).status_code == 200
        assert (await client.feeds.turn_off()).active is False
