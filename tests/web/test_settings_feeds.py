"""The feeds settings page: URLs shown once (for every task too), new ones stop the old ones,
feeds off; CSRF required; the URLs work in a reader's hands (feedparser)."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from tests.fixtures.feeds import read
from tests.fixtures.users import ApiUser
from tests.fixtures.web import Browserless, api_task

pytestmark = pytest.mark.timeout(60)
FEED_URL = re.compile(r'value="(http://[^"]+/feeds/[A-Za-z0-9_-]{43}/[^"]+\.atom)"')


async def test_feed_urls_are_shown_once_and_new_ones_stop_the_old(
    as_alice: Browserless, alice: ApiUser, anonymous: httpx.AsyncClient
) -> None:
    task = await api_task(as_alice.client, alice, name="<b>iPhone</b>")
    empty = await as_alice.get("/settings/feeds")
    assert empty.status_code == 200
    assert "No feed URLs yet" in empty.text
    made = await as_alice.post("/settings/feeds/rotate")
    assert made.status_code == 200
    assert "shown only this once" in made.text
    everything, one_task, template = FEED_URL.findall(made.text)
    assert everything.endswith("/notifications.atom")
    assert one_task.endswith(f"/tasks/{task['id']}.atom")
    assert template == one_task.replace(task["id"], "{task_id}")
    assert "&lt;b&gt;iPhone&lt;/b&gt;" in made.text  # the task's name, escaped
    assert (await read(anonymous, html.unescape(one_task))).feed.title == "Torale: <b>iPhone</b>"
    later = await as_alice.get("/settings/feeds")
    assert everything not in later.text
    assert "You have feed URLs, made" in later.text
    again = await as_alice.post("/settings/feeds/rotate")
    [new, _, _] = FEED_URL.findall(again.text)
    assert new != everything
    assert (await anonymous.get(everything)).status_code == 404
    await read(anonymous, new)
    off = await as_alice.post("/settings/feeds/off")
    assert (off.status_code, off.headers["location"]) == (303, "/settings/feeds?off=1")
    assert (await anonymous.get(new)).status_code == 404
    status = await as_alice.client.get("/api/v1/feeds/token", headers=alice.headers)
    assert status.json() == {"active": False, "created_at": None}


async def test_making_feed_urls_needs_the_csrf_token(as_alice: Browserless, alice: ApiUser) -> None:
    for path in ("/settings/feeds/rotate", "/settings/feeds/off"):
        refused = await as_alice.client.post(path, data={"csrf_token": "x" * 64})
        assert refused.status_code == 403
    status = await as_alice.client.get("/api/v1/feeds/token", headers=alice.headers)
    assert status.json()["active"] is False
