"""The feeds through HTTP: the token routes (Bearer) and the Atom feeds at URLs that carry the
token, read with feedparser as a feed reader would. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import FakeWeb
from tests.fixtures.engine import new_task, page, run_now
from tests.fixtures.feeds import notified, read, rotate, task_feed
from tests.fixtures.users import ApiUser, set_user_active
from torale import openapi as examples
from torale.feeds.service import MAX_ENTRIES
from torale.logs import OneLineFormatter

TOKEN = "/api/v1/feeds/token"
ATOM = "{http://www.w3.org/2005/Atom}"
NOT_FOUND = {"detail": "Feed not found"}
SOURCES = [
    {"url": "https://www.apple.com/newsroom/iphone-18/", "title": "Apple introduces iPhone 18"},
    {"url": "https://example.com/plain", "title": ""},
]
DIFF = "\n".join(
    [
        "--- https://shop.example/p (before)",
        "+++ https://shop.example/p (after)",
        "@@ -1 +1 @@",
        "-$59",
        "+$49",
    ]
)


async def task_of(client: httpx.AsyncClient, user: ApiUser, name: str = "iPhone") -> dict[str, Any]:
    return await new_task(client, user, name=name)


async def test_token_routes_say_whether_there_is_one_and_show_it_once(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    response = await client.get(TOKEN, headers=alice.headers)
    assert response.json() == {"active": False, "created_at": None}
    created = await rotate(client, alice)
    assert set(created) == set(examples.FEED_TOKEN_CREATED)
    assert len(created["token"]) == 43
    assert created["notifications_url"] == (
        f"http://torale.test/feeds/{created['token']}/notifications.atom"
    )
    assert created["task_url_template"].endswith(
        f"/feeds/{created['token']}/tasks/{{task_id}}.atom"
    )
    status = (await client.get(TOKEN, headers=alice.headers)).json()
    assert status == {"active": True, "created_at": created["created_at"]}
    assert created["token"] not in str(status)
    off = await client.delete(TOKEN, headers=alice.headers)
    assert off.status_code == 200
    assert off.json() == examples.NO_FEED_TOKEN
    assert (await client.get(created["notifications_url"])).status_code == 404


async def test_a_notification_is_an_entry_with_its_answer_diff_and_sources(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await task_of(client, alice, "Espresso machine price")
    created = await rotate(client, alice)
    at = datetime(2026, 9, 10, 7, 0, 38, tzinfo=UTC)
    quiet = await notified(app, task, answer="No change.", notify=False, at=at - timedelta(hours=1))
    execution = await notified(
        app,
        task,
        answer="The price dropped to $49.",
        change_summary="The price changed.",
        sources=SOURCES,
        diff=DIFF,
        at=at,
    )
    for url in (created["notifications_url"], task_feed(created, task["id"])):
        feed = await read(client, url)
        assert [link.href for link in feed.feed.links if link.rel == "self"] == [url]
        [entry] = feed.entries  # the run that did not notify is not an entry
        assert entry.id == f"urn:uuid:{execution}"
        assert str(quiet) not in str(feed)
        assert entry.title == "Espresso machine price: The price dropped to $49."
        assert entry.updated == "2026-09-10T07:00:38+00:00"
        assert entry.link == f"http://torale.test/tasks/{task['id']}"
        html = entry.content[0].value
        assert entry.content[0].type == "text/html"
        assert "<p>The price dropped to $49.</p>" in html
        assert "What changed:</strong> The price changed." in html
        assert "<pre>--- https://shop.example/p (before)\n" in html
        assert "-$59\n+$49</pre>" in html
        assert (
            '<a href="https://www.apple.com/newsroom/iphone-18/">Apple introduces iPhone 18</a>'
            in html
        )
        assert '<a href="https://example.com/plain">https://example.com/plain</a>' in html
        assert feed.feed.updated == "2026-09-10T07:00:38+00:00"
    task_feed_doc = await read(client, task_feed(created, task["id"]))
    assert task_feed_doc.feed.title == "Torale: Espresso machine price"
    assert task_feed_doc.feed.link == f"http://torale.test/tasks/{task['id']}"
    everything = await read(client, created["notifications_url"])
    assert everything.feed.title == "Torale: your notifications"
    # Ids stay: the same feed and entry ids after the token is rotated.
    again = await read(client, (await rotate(client, alice))["notifications_url"])
    assert again.feed.id == everything.feed.id
    assert [e.id for e in again.entries] == [e.id for e in everything.entries]
    assert again.feed.id != task_feed_doc.feed.id


async def test_a_change_run_without_channels_is_an_entry_with_its_diff(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    """End to end: the engine's own notification of a change, for a task with no channels."""
    fake_web.set_page("/p", page("The price is $59."))
    url = fake_web.url + "/p"
    body = {"urls": [url], "notify_behavior": "always", "notifications": []}
    response = await client.post("/api/v1/tasks", json=body, headers=alice.headers)
    task = response.json()
    assert task["mode"] == "change"
    created = await rotate(client, alice)
    await run_now(client, alice, task["id"])  # the baseline: no notification
    assert (await read(client, task_feed(created, task["id"]))).entries == []
    fake_web.set_page("/p", page("The price is $49."))
    changed = await run_now(client, alice, task["id"])
    assert changed["notification"]
    [entry] = (await read(client, task_feed(created, task["id"]))).entries
    assert entry.id == f"urn:uuid:{changed['id']}"
    html = entry.content[0].value
    assert f"<pre>--- {url} (before)\n+++ {url} (after)\n" in html
    assert "\n-Apple Newsroom By Staff Reporter, 2025-01-15 The price is $59. " in html
    assert "\n+Apple Newsroom By Staff Reporter, 2025-01-15 The price is $49. " in html
    assert f'<a href="{url}">' in html


async def test_a_rotated_token_stops_the_old_urls_at_once(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await task_of(client, alice)
    await notified(app, task, answer="Announced.")
    old = await rotate(client, alice)
    await read(client, old["notifications_url"])
    new = await rotate(client, alice)
    assert new["token"] != old["token"]
    for url in (old["notifications_url"], task_feed(old, task["id"])):
        response = await client.get(url)
        assert response.status_code == 404
        assert response.json() == NOT_FOUND
    assert len((await read(client, new["notifications_url"])).entries) == 1


async def test_no_other_users_entries_and_their_tasks_are_404(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser
) -> None:
    mine = await task_of(client, alice, "Alice's task")
    theirs = await task_of(client, bob, "Bob's task")
    await notified(app, mine, answer="Alice's news.")
    await notified(app, theirs, answer="Bob's news.")
    feeds = await rotate(client, alice)
    entries = (await read(client, feeds["notifications_url"])).entries
    assert [e.title for e in entries] == ["Alice's task: Alice's news."]
    unknown = await client.get("/feeds/" + "x" * 43 + "/notifications.atom")
    for task_id in (theirs["id"], str(uuid.uuid4()), "not-a-uuid"):
        response = await client.get(task_feed(feeds, task_id))
        assert response.status_code == 404
        assert response.json() == NOT_FOUND == unknown.json()


async def test_a_deactivated_users_feed_is_404(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    feeds = await rotate(client, alice)
    await set_user_active(app, alice.id, False)
    response = await client.get(feeds["notifications_url"])
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    await set_user_active(app, alice.id, True)
    await read(client, feeds["notifications_url"])


async def test_what_comes_from_outside_is_escaped_and_cannot_run(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await task_of(client, alice, "</title><script>alert('name')</script>")
    await notified(
        app,
        task,
        answer="<script>alert(1)</script> & <b>bold</b>\x01\x0b",
        change_summary='<img src=x onerror="alert(2)">',
        sources=[
            {"url": "javascript:alert(3)", "title": "<i>click</i>"},
            {"url": 'https://example.com/"><script>alert(4)</script>', "title": "quote"},
        ],
        diff="--- a\n+++ b\n@@ -1 +1 @@\n-<p>old</p>\n+<script>alert(5)</script>",
    )
    feeds = await rotate(client, alice)
    raw = (await client.get(feeds["notifications_url"])).text
    assert "<script" not in raw  # escaped twice: for the HTML, then for the XML
    assert "<img" not in raw
    # What a reader gets once the XML is read: HTML in which the values are text.
    document = ElementTree.fromstring(raw)  # noqa: S314 - our own server's answer
    content = document.find(f"{ATOM}entry/{ATOM}content")
    assert content is not None
    html = content.text or ""
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;</p>" in html
    assert "What changed:</strong> &lt;img src=x onerror=&quot;alert(2)&quot;&gt;</p>" in html
    assert "<li>&lt;i&gt;click&lt;/i&gt; (javascript:alert(3))</li>" in html  # not a link
    assert '<a href="https://example.com/&quot;&gt;&lt;script&gt;alert(4)&lt;/script&gt;">' in html
    assert "+&lt;script&gt;alert(5)&lt;/script&gt;</pre>" in html
    assert html.count("<a ") == 1
    [entry] = (await read(client, feeds["notifications_url"])).entries
    assert entry.title.startswith("</title><script>alert('name')</script>: <script>alert(1)")
    assert "\x01" not in raw
    assert "\x0b" not in raw


async def test_304_when_the_reader_has_the_feed(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await task_of(client, alice)
    at = datetime(2026, 9, 10, 7, 0, 38, 123456, tzinfo=UTC)
    await notified(app, task, answer="First.", at=at)
    url = (await rotate(client, alice))["notifications_url"]
    first = await client.get(url)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert modified == "Thu, 10 Sep 2026 07:00:38 GMT"
    assert first.headers["cache-control"] == "private, no-cache"
    same = await client.get(url, headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    assert (
        await client.get(url, headers={"If-None-Match": f'"other", W/{etag}'})
    ).status_code == 304
    assert (await client.get(url, headers={"If-Modified-Since": modified})).status_code == 304
    earlier = format_datetime(at - timedelta(seconds=1), usegmt=True)
    assert (await client.get(url, headers={"If-Modified-Since": earlier})).status_code == 200
    assert (await client.get(url, headers={"If-Modified-Since": "yesterday"})).status_code == 200
    # A new notification: a new document, and the old validators no longer match.
    await notified(app, task, answer="Second.", at=at + timedelta(minutes=5))
    changed = await client.get(url, headers={"If-None-Match": etag, "If-Modified-Since": modified})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.headers["last-modified"] == "Thu, 10 Sep 2026 07:05:38 GMT"


async def test_only_the_newest_entries_newest_first(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await task_of(client, alice)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(MAX_ENTRIES + 2):
        await notified(app, task, answer=f"Run {n}.", at=start + timedelta(hours=n))
    feeds = await rotate(client, alice)
    entries = (await read(client, task_feed(feeds, task["id"]))).entries
    assert len(entries) == MAX_ENTRIES
    assert entries[0].title == f"iPhone: Run {MAX_ENTRIES + 1}."
    assert entries[-1].title == "iPhone: Run 2."


@pytest.mark.parametrize("extra_settings", [{"public_url": "https://torale.example.com/"}])
async def test_urls_and_links_use_the_public_url(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await task_of(client, alice)
    await notified(app, task, answer="Announced.")
    created = await rotate(client, alice)
    assert created["notifications_url"].startswith("https://torale.example.com/feeds/")
    url = created["notifications_url"].replace("https://torale.example.com", "http://torale.test")
    feed = await read(client, url)
    assert feed.feed.links[0].href == created["notifications_url"]  # self
    assert feed.entries[0].link == f"https://torale.example.com/tasks/{task['id']}"


@pytest.mark.parametrize("extra_settings", [{"auth_failure_limits": "3/minute"}])
async def test_guessing_tokens_is_throttled_per_address(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    feeds = await rotate(client, alice)
    await read(client, feeds["notifications_url"])  # a working URL counts as no failure
    guesses = [await client.get(f"/feeds/guess{n:038d}/notifications.atom") for n in range(4)]
    assert [r.status_code for r in guesses] == [404, 404, 404, 429]
    assert "retry-after" in guesses[-1].headers
    # The address is refused now, whatever it asks.
    assert (await client.get(feeds["notifications_url"])).status_code == 429


def test_log_lines_never_carry_a_feed_token() -> None:
    token = "abcDEF_123-xyz" + "q" * 29
    for message in (
        f'127.0.0.1:5 - "GET /feeds/{token}/notifications.atom HTTP/1.1" 200',
        f"fetched https://torale.example.com/feeds/{token}/tasks/{uuid.uuid4()}.atom",
    ):
        record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, message, (), None)
        line = OneLineFormatter("%(message)s").format(record)
        assert token not in line
        assert "/feeds/[redacted]" in line or "https://torale.example.com/…" in line
