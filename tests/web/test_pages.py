"""Every page and form of the web app through httpx: what it shows, what it changes (checked
through the JSON API), and what it refuses (no CSRF token, another origin, another user's task,
an expired or ended session, a session cookie sent to the API)."""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tests.fakes import FakeSearxng, FakeWeb, WebhookReceiver, article_html
from tests.fixtures.users import ApiUser
from tests.fixtures.web import CSRF_RE, Browserless, api_task, sign_in
from torale.auth import signin_links
from torale.db.models import Task, WebSession
from torale.state import AppState

pytestmark = pytest.mark.timeout(60)


def _state(app: FastAPI) -> AppState:
    state: AppState = app.state.torale
    return state


# --- signing in and out ---------------------------------------------------------------------


async def test_root_opens_signin_when_signed_out_and_tasks_when_signed_in(
    anonymous: httpx.AsyncClient, as_alice: Browserless
) -> None:
    response = await anonymous.get("/")
    assert (response.status_code, response.headers["location"]) == (303, "/signin")
    page = await anonymous.get("/tasks")
    assert (page.status_code, page.headers["location"]) == (303, "/signin?next=/tasks")
    response = await as_alice.get("/")
    assert (response.status_code, response.headers["location"]) == (303, "/tasks")


async def _signin_form(client: httpx.AsyncClient) -> str:
    page = await client.get("/signin")
    assert page.status_code == 200
    assert "torale_csrf" in client.cookies
    found = CSRF_RE.search(page.text)
    assert found
    return found.group(1)


async def test_sign_in_with_an_api_key(anonymous: httpx.AsyncClient, alice: ApiUser) -> None:
    token = await _signin_form(anonymous)
    response = await anonymous.post(
        "/signin", data={"api_key": alice.key, "csrf_token": token, "next": "/settings/webhooks"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/settings/webhooks"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "torale_session=" in c)
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # the public URL is http here
    page = await anonymous.get("/tasks")
    assert page.status_code == 200
    assert alice.email in page.text


async def test_sign_in_only_goes_to_paths_on_this_site(
    anonymous: httpx.AsyncClient, alice: ApiUser
) -> None:
    token = await _signin_form(anonymous)
    response = await anonymous.post(
        "/signin", data={"api_key": alice.key, "csrf_token": token, "next": "//evil.example/x"}
    )
    assert response.headers["location"] == "/tasks"


async def test_a_wrong_or_revoked_key_does_not_sign_in(
    anonymous: httpx.AsyncClient, alice: ApiUser
) -> None:
    token = await _signin_form(anonymous)
    response = await anonymous.post(
        "/signin", data={"api_key": "sk_" + "x" * 43, "csrf_token": token}
    )
    assert response.status_code == 401
    assert "not valid" in response.text
    assert "torale_session" not in response.headers.get("set-cookie", "")
    keys = (await anonymous.get("/auth/api-keys", headers=alice.headers)).json()["items"]
    await anonymous.delete(f"/auth/api-keys/{keys[0]['id']}", headers=alice.headers)
    token = await _signin_form(anonymous)
    response = await anonymous.post("/signin", data={"api_key": alice.key, "csrf_token": token})
    assert response.status_code == 401


async def test_sign_in_without_the_csrf_token_or_from_another_origin_is_refused(
    anonymous: httpx.AsyncClient, alice: ApiUser
) -> None:
    token = await _signin_form(anonymous)
    missing = await anonymous.post("/signin", data={"api_key": alice.key})
    assert missing.status_code == 403
    wrong = await anonymous.post("/signin", data={"api_key": alice.key, "csrf_token": "x" * 64})
    assert wrong.status_code == 403
    elsewhere = await anonymous.post(
        "/signin",
        data={"api_key": alice.key, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403
    cross_site = await anonymous.post(
        "/signin",
        data={"api_key": alice.key, "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403
    assert "torale_session" not in anonymous.cookies


async def test_a_signin_link_signs_in_once(
    app: FastAPI, anonymous: httpx.AsyncClient, alice: ApiUser
) -> None:
    state = _state(app)
    async with state.sessions() as session:
        token = await signin_links.create(session, user_id=alice.id, hashing_key=state.hashing_key)
        await session.commit()
    first = await anonymous.get("/signin", params={"token": token})
    assert (first.status_code, first.headers["location"]) == (303, "/tasks")
    assert (await anonymous.get("/tasks")).status_code == 200
    anonymous.cookies.clear()
    again = await anonymous.get("/signin", params={"token": token})
    assert again.status_code == 400
    assert "used already or has expired" in again.text
    assert "torale_session" not in anonymous.cookies


async def test_sign_out_ends_this_session_only(app: FastAPI, alice: ApiUser) -> None:
    first, second = await sign_in(app, alice), await sign_in(app, alice)
    async with first.client, second.client:
        response = await first.post("/signout")
        assert (response.status_code, response.headers["location"]) == (303, "/signin")
        assert (await first.get("/tasks")).status_code == 303
        assert (await second.get("/tasks")).status_code == 200


async def test_sign_out_everywhere(app: FastAPI, alice: ApiUser) -> None:
    first, second = await sign_in(app, alice), await sign_in(app, alice)
    async with first.client, second.client:
        assert (await first.post("/signout-everywhere")).status_code == 303
        assert (await second.get("/tasks")).status_code == 303
        assert (await first.get("/tasks")).status_code == 303


async def test_sign_out_needs_the_csrf_token(as_alice: Browserless) -> None:
    response = await as_alice.client.post("/signout")
    assert response.status_code == 403
    assert (await as_alice.get("/tasks")).status_code == 200


async def test_idle_and_absolute_session_expiry(app: FastAPI, as_alice: Browserless) -> None:
    assert (await as_alice.get("/tasks")).status_code == 200
    idle = _state(app).settings.session_idle_seconds
    async with _state(app).sessions() as session:
        await session.execute(
            update(WebSession).values(last_seen_at=datetime.now(UTC) - timedelta(seconds=idle + 1))
        )
        await session.commit()
    response = await as_alice.get("/tasks/new")
    assert (response.status_code, response.headers["location"]) == (303, "/signin?next=/tasks/new")
    again = await sign_in(app, as_alice.user)
    async with again.client:
        async with _state(app).sessions() as session:
            await session.execute(
                update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            await session.commit()
        assert (await again.get("/tasks")).status_code == 303


async def test_htmx_requests_without_a_session_are_sent_to_signin(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/tasks", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"] == "/signin?next=/tasks"


async def test_a_session_cookie_does_not_authenticate_the_api(
    as_alice: Browserless, as_admin: Browserless
) -> None:
    response = await as_alice.get("/api/v1/tasks")
    assert response.status_code == 401
    assert (await as_alice.get("/auth/me")).status_code == 401
    assert (await as_admin.get("/admin/stats")).status_code == 401
    response = await as_alice.client.post(
        "/api/v1/tasks",
        json={"search_query": "x"},
        headers={"X-CSRF-Token": as_alice.csrf_token},
    )
    assert response.status_code == 401


async def test_deactivation_ends_the_users_open_session(
    as_admin: Browserless, as_bob: Browserless
) -> None:
    assert (await as_bob.get("/tasks")).status_code == 200
    response = await as_admin.post(f"/manage/users/{as_bob.user.id}/deactivate")
    assert response.status_code == 303
    assert (await as_bob.get("/tasks")).status_code == 303
    users = await as_admin.get("/manage/users")
    assert "deactivated" in users.text
    assert (await as_admin.post(f"/manage/users/{as_bob.user.id}/activate")).status_code == 303
    assert (await as_bob.get("/tasks")).status_code == 303  # ended, not just suspended


async def test_an_unexpected_error_is_a_page_that_tells_nothing(
    as_alice: Browserless, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from torale.tasks import service

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("internal detail")

    # The query under the page's list (tasks.actions.list_tasks_body reads it directly).
    monkeypatch.setattr(service, "list_tasks", broken)
    response = await as_alice.get("/tasks")
    assert response.status_code == 500
    assert "text/html" in response.headers["content-type"]
    assert "Something went wrong" in response.text
    assert "internal detail" not in response.text
    assert any("unhandled error on GET /tasks" in r.getMessage() for r in caplog.records)


# --- pages, headers, assets -----------------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.IGNORECASE)


def _assert_page_is_safe(response: httpx.Response) -> None:
    assert response.status_code == 200, (response.request.url, response.status_code)
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    text = response.text
    assert not INLINE_SCRIPT.search(text), "inline script"
    assert not INLINE_HANDLER.search(text), "inline event handler"
    assert not STYLE_ATTRIBUTE.search(text), "style attribute (the CSP refuses inline styles)"
    assert "http://" not in text.split("<body", 1)[0].replace("http://torale.test", "")
    assert 'lang="en"' in text


async def test_every_page_renders_safely(
    as_alice: Browserless, alice: ApiUser, anonymous: httpx.AsyncClient
) -> None:
    task = await api_task(as_alice.client, alice)
    pages = [
        "/tasks",
        "/tasks?state=active&q=iphone",
        "/tasks/new",
        f"/tasks/{task['id']}",
        f"/tasks/{task['id']}/edit",
        f"/tasks/{task['id']}/delete",
        "/settings/api-keys",
        "/settings/webhooks",
    ]
    for path in pages:
        response = await as_alice.get(path)
        _assert_page_is_safe(response)
        # Every form carries this session's token (a form with an empty one could never post).
        tokens = CSRF_RE.findall(response.text)
        assert tokens, path
        assert set(tokens) == {as_alice.csrf_token}, path
    _assert_page_is_safe(await anonymous.get("/signin"))


async def test_admin_pages_for_admins_only(as_admin: Browserless, as_alice: Browserless) -> None:
    for path in ("/manage", "/manage/users", "/manage/errors", "/manage/runs"):
        response = await as_admin.get(path)
        _assert_page_is_safe(response)
        assert set(CSRF_RE.findall(response.text)) == {as_admin.csrf_token}, path
        denied = await as_alice.get(path)
        assert denied.status_code == 404, path
    response = await as_alice.post(f"/manage/users/{as_admin.user.id}/deactivate")
    assert response.status_code == 404
    me = await as_admin.get("/tasks")
    assert me.status_code == 200  # the admin was not deactivated
    assert 'href="/manage"' in me.text
    assert 'href="/manage"' not in (await as_alice.get("/tasks")).text


async def test_assets_have_hashed_names_and_are_cached_forever(
    as_alice: Browserless, anonymous: httpx.AsyncClient
) -> None:
    page = (await as_alice.get("/tasks")).text
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert {u.rsplit("/", 1)[1].split(".")[0] for u in urls} >= {"app", "htmx"}
    for url in urls:
        assert re.search(r"\.[0-9a-f]{12}\.(js|css)$", url), url
        response = await anonymous.get(url)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert (await anonymous.get("/static/app.css")).status_code == 404  # unhashed: no
    assert (await anonymous.get("/static/../config.py")).status_code == 404


@pytest.mark.parametrize(("path", "script"), [("/docs", "swagger-ui-bundle"), ("/redoc", "redoc")])
async def test_docs_load_their_scripts_from_the_package(
    anonymous: httpx.AsyncClient, path: str, script: str
) -> None:
    page = await anonymous.get(path)
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(script in s for s in sources)
    assert all(s.startswith("/static/") for s in sources), sources
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert not INLINE_SCRIPT.search(page.text)
    for source in sources:
        assert (await anonymous.get(source)).status_code == 200


async def test_hostile_text_renders_inert(
    as_alice: Browserless, alice: ApiUser, fake_search: FakeSearxng, fake_web: FakeWeb
) -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    task = await api_task(
        as_alice.client,
        alice,
        name=hostile,
        search_query=hostile,
        condition_description=hostile,
        notifications=[
            {"type": "webhook", "url": "https://example.com/h", "headers": {"X-Evil": hostile}}
        ],
    )
    for path in ("/tasks", f"/tasks/{task['id']}", f"/tasks/{task['id']}/edit"):
        text = (await as_alice.get(path)).text
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


# --- tasks ------------------------------------------------------------------------------------

TASK_FORM = {
    "search_query": "next iPhone release date",
    "condition_description": "Apple has announced the date",
    "url_0": "",
    "selector_0": "",
    "schedule_kind": "daily",
    "daily_at": "07:30",
    "timezone": "Europe/Berlin",
    "notify_behavior": "always",
    "emails": "me@example.com",
}


async def _tasks(client: httpx.AsyncClient, user: ApiUser) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/api/v1/tasks", headers=user.headers)).json()[
        "items"
    ]
    return items


async def test_create_a_task_from_the_form(as_alice: Browserless, alice: ApiUser) -> None:
    response = await as_alice.post("/tasks/new", TASK_FORM)
    assert response.status_code == 303
    [task] = await _tasks(as_alice.client, alice)
    assert response.headers["location"] == f"/tasks/{task['id']}"
    assert task["schedule"] == "30 7 * * *"
    assert task["timezone"] == "Europe/Berlin"
    assert task["notify_behavior"] == "always"
    assert task["notifications"] == [{"type": "email", "address": "me@example.com"}]
    assert task["name"] == "next iPhone release date"
    page = await as_alice.get(response.headers["location"])
    assert "every day at 07:30 Europe/Berlin" in page.text


@pytest.mark.parametrize(
    ("fields", "cron"),
    [
        ({"schedule_kind": "hours", "every_hours": "6"}, "0 */6 * * *"),
        ({"schedule_kind": "hours", "every_hours": "1"}, "0 * * * *"),
        ({"schedule_kind": "weekly", "weekly_day": "5", "weekly_at": "18:05"}, "5 18 * * 5"),
        ({"schedule_kind": "cron", "cron": "15 8 * * 1-5"}, "15 8 * * 1-5"),
    ],
)
async def test_schedule_presets_become_crons(
    as_alice: Browserless, alice: ApiUser, fields: dict[str, str], cron: str
) -> None:
    response = await as_alice.post("/tasks/new", TASK_FORM | fields)
    assert response.status_code == 303, response.text
    [task] = await _tasks(as_alice.client, alice)
    assert task["schedule"] == cron
    edit = await as_alice.get(f"/tasks/{task['id']}/edit")
    kind = fields["schedule_kind"]
    assert re.search(rf'id="kind-{kind}"[^>]*checked', edit.text), "the preset is shown again"


async def test_a_form_without_the_csrf_token_changes_nothing(
    as_alice: Browserless, alice: ApiUser
) -> None:
    response = await as_alice.client.post("/tasks/new", data=TASK_FORM)
    assert response.status_code == 403
    assert await _tasks(as_alice.client, alice) == []
    other_origin = await as_alice.post(
        "/tasks/new", TASK_FORM, headers={"Origin": "https://evil.example"}
    )
    assert other_origin.status_code == 403
    other_session = await as_alice.client.post(
        "/tasks/new", data=TASK_FORM | {"csrf_token": "0" * 64}
    )
    assert other_session.status_code == 403
    assert await _tasks(as_alice.client, alice) == []


async def test_htmx_posts_carry_the_token_in_a_header(
    as_alice: Browserless, alice: ApiUser
) -> None:
    response = await as_alice.client.post(
        "/tasks/new",
        data=TASK_FORM,
        headers={"X-CSRF-Token": as_alice.csrf_token, "HX-Request": "true"},
    )
    assert response.status_code == 303
    page = await as_alice.get("/tasks")
    assert f"&#34;X-CSRF-Token&#34;: &#34;{as_alice.csrf_token}&#34;" in page.text or (
        as_alice.csrf_token in page.text
    )


async def test_errors_appear_next_to_their_fields_and_the_form_keeps_its_values(
    as_alice: Browserless, alice: ApiUser
) -> None:
    response = await as_alice.post(
        "/tasks/new",
        TASK_FORM
        | {
            "search_query": "",
            "schedule_kind": "cron",
            "cron": "* * * * *",
            "urls": "ftp://example.com/x",
            "condition_description": "kept as typed",
        },
    )
    assert response.status_code == 422
    text = response.text
    assert 'id="search_query-error"' in text
    assert "kept as typed" in text
    assert 'value="* * * * *"' in text
    assert await _tasks(as_alice.client, alice) == []
    too_often = await as_alice.post(
        "/tasks/new", TASK_FORM | {"schedule_kind": "cron", "cron": "* * * * *"}
    )
    assert too_often.status_code == 422
    assert re.search(r'id="schedule-error">Schedule runs too often', too_often.text)
    bad_url = await as_alice.post("/tasks/new", TASK_FORM | {"url_0": "http://10.0.0.1/"})
    assert bad_url.status_code == 422
    assert re.search(r'id="url_0-error">', bad_url.text)  # under the row's address


async def test_next_three_runs_as_you_type(as_alice: Browserless) -> None:
    response = await as_alice.get(
        "/tasks/schedule-preview",
        params={"schedule_kind": "daily", "daily_at": "09:00", "timezone": "Europe/Berlin"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    times = re.findall(r'datetime="([^"]+)"', response.text)
    assert len(times) == 3
    firsts = [datetime.fromisoformat(t) for t in times]
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(firsts))
    assert all(t.astimezone(UTC).hour in (7, 8) for t in firsts)  # 09:00 Berlin
    bad = await as_alice.get(
        "/tasks/schedule-preview", params={"schedule_kind": "cron", "cron": "nope"}
    )
    assert "Invalid cron expression" in bad.text
    zone = await as_alice.get(
        "/tasks/schedule-preview", params={"schedule_kind": "daily", "timezone": "Mars/Olympus"}
    )
    assert "Unknown time zone" in zone.text


async def test_preview_shows_the_verdict_with_its_sources(
    as_alice: Browserless, alice: ApiUser, fake_search: FakeSearxng, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/news", article_html("Apple Newsroom", ["The date is announced: Sept 9."]))
    fake_search.set_results(None, [(fake_web.url + "/news", "Apple Newsroom", "date")])
    response = await as_alice.post("/tasks/preview", TASK_FORM, htmx=True)
    assert response.status_code == 200
    assert "Condition met" in response.text
    assert "Apple will release the iPhone 18 on September 9." in response.text
    assert f'href="{fake_web.url}/news"' in response.text
    assert await _tasks(as_alice.client, alice) == []  # nothing saved
    empty = await as_alice.post("/tasks/preview", TASK_FORM | {"search_query": ""}, htmx=True)
    assert "alert-error" in empty.text


async def test_edit_a_task(as_alice: Browserless, alice: ApiUser) -> None:
    task = await api_task(
        as_alice.client,
        alice,
        notifications=[
            {"type": "webhook", "url": "https://example.com/h", "headers": {"X-Key": "s3cret"}}
        ],
    )
    page = await as_alice.get(f"/tasks/{task['id']}/edit")
    assert "s3cret" not in page.text
    response = await as_alice.post(
        f"/tasks/{task['id']}/edit",
        TASK_FORM
        | {"name": "Renamed", "webhooks": "https://example.com/h", "emails": "", "apprise": ""},
    )
    assert response.status_code == 303
    [saved] = await _tasks(as_alice.client, alice)
    assert saved["name"] == "Renamed"
    assert saved["schedule"] == "30 7 * * *"
    # The header the form cannot show is kept (masked in responses, stored as it was).
    assert saved["notifications"] == [
        {
            "type": "webhook",
            "url": "https://example.com/h",
            "headers": {"X-Key": "********"},
            "enabled": True,
        }
    ]


async def test_channel_secrets_never_reach_a_page(
    app: FastAPI, as_alice: Browserless, alice: ApiUser
) -> None:
    task = await api_task(
        as_alice.client,
        alice,
        notifications=[
            {"type": "apprise", "url": "tgram://123456:SECRETbottoken/987"},
            {"type": "webhook", "url": "https://example.com/h", "headers": {"X-Key": "s3cret"}},
        ],
    )
    for path in (f"/tasks/{task['id']}", f"/tasks/{task['id']}/edit", "/tasks"):
        text = (await as_alice.get(path)).text
        assert "SECRETbottoken" not in text, path
        assert "s3cret" not in text, path
    # Saving the edit form, masks and all, keeps the real secrets.
    response = await as_alice.post(
        f"/tasks/{task['id']}/edit",
        TASK_FORM
        | {"apprise": "tgram://********", "webhooks": "https://example.com/h", "emails": ""},
    )
    assert response.status_code == 303, response.text
    async with _state(app).sessions() as session:
        stored = await session.get(Task, uuid.UUID(task["id"]))
        assert stored is not None
        assert {c["type"]: c for c in stored.notifications}["apprise"]["url"] == (
            "tgram://123456:SECRETbottoken/987"
        )
        assert {c["type"]: c for c in stored.notifications}["webhook"]["headers"] == {
            "X-Key": "s3cret"
        }


async def test_another_users_task_is_a_404_everywhere(
    as_alice: Browserless, as_bob: Browserless, bob: ApiUser
) -> None:
    task = await api_task(as_bob.client, bob)
    base = f"/tasks/{task['id']}"
    for path in (base, base + "/edit", base + "/delete", base + "/history"):
        assert (await as_alice.get(path)).status_code == 404, path
    for path in (
        base + "/edit",
        base + "/run",
        base + "/pause",
        base + "/resume",
        base + "/delete",
    ):
        assert (await as_alice.post(path, TASK_FORM)).status_code == 404, path
    mine = await as_bob.get(base)
    assert mine.status_code == 200
    assert "active" in mine.text
    assert (await as_alice.get("/tasks/not-a-uuid")).status_code == 404


async def test_run_now_shows_the_verdict_without_a_reload(
    as_alice: Browserless, alice: ApiUser, fake_search: FakeSearxng, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/news", article_html("Apple Newsroom", ["The date is announced."]))
    fake_search.set_results(None, [(fake_web.url + "/news", "Apple Newsroom", "date")])
    task = await api_task(as_alice.client, alice)
    started = await as_alice.post(f"/tasks/{task['id']}/run", htmx=True)
    assert started.status_code == 200
    text = started.text
    for _ in range(100):
        poll = re.search(r'hx-get="(/tasks/[^"]+/runs/[^"]+)"', text)
        if not poll:
            break
        await asyncio.sleep(0.1)
        response = await as_alice.get(poll.group(1), headers={"HX-Request": "true"})
        text = response.text
    assert "Apple will release the iPhone 18 on September 9." in text
    assert response.headers.get("HX-Trigger") == "run-finished"
    history = await as_alice.get(f"/tasks/{task['id']}/history")
    assert "Met" in history.text
    plain = await as_alice.post(f"/tasks/{task['id']}/run")
    assert (plain.status_code, plain.headers["location"]) == (303, f"/tasks/{task['id']}")


async def test_pause_resume_and_delete(as_alice: Browserless, alice: ApiUser) -> None:
    task = await api_task(as_alice.client, alice)
    paused = await as_alice.post(f"/tasks/{task['id']}/pause", htmx=True)
    assert paused.status_code == 200
    assert "Resume" in paused.text
    assert (await _tasks(as_alice.client, alice))[0]["state"] == "paused"
    resumed = await as_alice.post(f"/tasks/{task['id']}/resume")
    assert resumed.status_code == 303
    assert (await _tasks(as_alice.client, alice))[0]["state"] == "active"
    confirm = await as_alice.get(f"/tasks/{task['id']}/delete")
    assert "cannot be undone" in confirm.text
    deleted = await as_alice.post(f"/tasks/{task['id']}/delete")
    assert (deleted.status_code, deleted.headers["location"]) == (303, "/tasks")
    assert await _tasks(as_alice.client, alice) == []


async def test_tasks_list_filters_and_searches(as_alice: Browserless, alice: ApiUser) -> None:
    empty = await as_alice.get("/tasks")
    assert "Tell me when the next iPhone release date is announced" in empty.text
    await api_task(as_alice.client, alice, name="Rust edition", search_query="rust 2027")
    paused = await api_task(as_alice.client, alice, name="Marathon", search_query="berlin run")
    await as_alice.post(f"/tasks/{paused['id']}/pause")
    everything = await as_alice.get("/tasks")
    assert "Rust edition" in everything.text
    assert "Marathon" in everything.text
    only_paused = await as_alice.get("/tasks", params={"state": "paused"})
    assert "Marathon" in only_paused.text
    assert "Rust edition" not in only_paused.text
    found = await as_alice.get(
        "/tasks", params={"q": "RUST"}, headers={"HX-Request": "true", "HX-Target": "task-list"}
    )
    assert "Rust edition" in found.text
    assert "Marathon" not in found.text
    assert "<html" not in found.text  # the list only
    # LIKE wildcards are searched for literally ("_" unescaped would match every task).
    for wildcard in ("_", "%"):
        none = await as_alice.get("/tasks", params={"q": wildcard})
        assert "No task matches" in none.text, wildcard


# --- settings ---------------------------------------------------------------------------------


async def test_api_keys_create_show_once_and_revoke(
    as_alice: Browserless, anonymous: httpx.AsyncClient
) -> None:
    created = await as_alice.post("/settings/api-keys", {"name": "laptop"})
    assert created.status_code == 200
    found = re.search(r'value="(sk_[A-Za-z0-9_-]{43})"', created.text)
    assert found
    key = found.group(1)
    assert "shown only this once" in created.text
    listing = await as_alice.get("/settings/api-keys")
    assert key not in listing.text
    assert key[:12] in listing.text
    headers = {"Authorization": f"Bearer {key}"}
    assert (await anonymous.get("/api/v1/tasks", headers=headers)).status_code == 200
    keys = (await anonymous.get("/auth/api-keys", headers=headers)).json()["items"]
    laptop = next(k for k in keys if k["name"] == "laptop")
    revoked = await as_alice.post(f"/settings/api-keys/{laptop['id']}/revoke")
    assert revoked.status_code == 303
    assert (await anonymous.get("/api/v1/tasks", headers=headers)).status_code == 401
    blank = await as_alice.post("/settings/api-keys", {"name": "  "})
    assert blank.status_code == 422
    assert 'id="key-name-error"' in blank.text


async def test_another_users_key_cannot_be_revoked(
    as_alice: Browserless, bob: ApiUser, anonymous: httpx.AsyncClient
) -> None:
    keys = (await anonymous.get("/auth/api-keys", headers=bob.headers)).json()["items"]
    response = await as_alice.post(f"/settings/api-keys/{keys[0]['id']}/revoke")
    assert response.status_code == 404
    assert (await anonymous.get("/auth/me", headers=bob.headers)).status_code == 200


async def test_webhook_settings_test_and_rotate(
    as_alice: Browserless, alice: ApiUser, receiver: WebhookReceiver
) -> None:
    page = await as_alice.get("/settings/webhooks")
    secret = re.search(r'value="(whsec_[^"]+)"', page.text)
    assert secret
    refused = await as_alice.post("/settings/webhooks", {"url": "http://10.1.2.3/hook"})
    assert refused.status_code == 422
    assert 'id="webhook-url-error"' in refused.text
    assert 'value="http://10.1.2.3/hook"' in refused.text  # kept as typed
    saved = await as_alice.post(
        "/settings/webhooks", {"url": receiver.url + "/hook", "enabled": "1"}
    )
    assert saved.status_code == 303
    config = (await as_alice.client.get("/api/v1/webhooks/config", headers=alice.headers)).json()
    assert config["url"] == receiver.url + "/hook"
    assert config["enabled"] is True
    test = await as_alice.post("/settings/webhooks/test", htmx=True)
    assert "Delivered" in test.text
    assert "answered 200" in test.text
    assert len(receiver.received) == 1
    await as_alice.post("/settings/webhooks/rotate")
    rotated = await as_alice.get("/settings/webhooks")
    assert secret.group(1) not in rotated.text


async def test_webhook_test_without_a_url_says_what_to_do(as_alice: Browserless) -> None:
    response = await as_alice.post("/settings/webhooks/test", htmx=True)
    assert "save a webhook URL first" in response.text


async def test_admin_overview_counts_and_charts_runs(
    as_admin: Browserless,
    as_alice: Browserless,
    alice: ApiUser,
    fake_search: FakeSearxng,
    fake_web: FakeWeb,
) -> None:
    fake_web.set_page("/news", article_html("Apple Newsroom", ["Nothing new."]))
    fake_search.set_results(None, [(fake_web.url + "/news", "Apple Newsroom", "news")])
    task = await api_task(as_alice.client, alice)
    await as_alice.client.post(
        f"/api/v1/tasks/{task['id']}/execute?wait=true", headers=alice.headers
    )
    page = await as_admin.get("/manage")
    assert page.status_code == 200
    assert re.search(r"<desc[^>]*>.*: 1 succeeded, 0 failed", page.text)
    runs = await as_admin.get("/manage/runs")
    assert task["name"] in runs.text


async def test_text_a_database_cannot_store_is_refused_on_pages_too(
    as_alice: Browserless, anonymous: httpx.AsyncClient
) -> None:
    """The API's text rules hold for page inputs: a NUL is a 4xx, never a 500."""
    listed = await as_alice.get("/tasks", params={"q": "a\x00b"})
    assert 400 <= listed.status_code < 500, listed.status_code
    signin = await anonymous.get("/signin", params={"token": "x\x00"})
    assert 400 <= signin.status_code < 500, signin.status_code
