"""Cached pages (web/page_cache.py) are exactly what rendering again would give: every write that
changes what a page shows, by this process or another connection, is on the next answer; another
user never gets a cached page; each session gets its own CSRF token in it; and a cached page
never goes stale by the clock (its times are absolute)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from tests.fixtures.users import ApiUser
from tests.fixtures.web import CSRF_RE, Browserless, api_task, sign_in
from torale.db.models import Delivery, DeliveryAttempt, Execution, Task, User, WebSession
from torale.state import AppState
from torale.statuses import DeliveryStatus, ExecutionStatus, Trigger
from torale.web import rendering
from torale.web import tasks as task_pages
from torale.web.page_cache import PageCache

pytestmark = pytest.mark.timeout(60)


def _state(app: FastAPI) -> AppState:
    state: AppState = app.state.torale
    return state


@pytest.fixture
async def other_connection(app: FastAPI) -> AsyncIterator[AsyncEngine]:
    """Another engine on the same database: writes as another process would make them."""
    engine = create_async_engine(_state(app).settings.effective_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The templates the task pages render (a cache hit renders nothing)."""
    made: list[str] = []
    real = rendering.render_html

    def spy(request, name, context, csrf_token):  # type: ignore[no-untyped-def]
        made.append(name)
        return real(request, name, context, csrf_token)

    monkeypatch.setattr(task_pages, "render_html", spy)
    return made


async def _run_with_delivery(engine: AsyncEngine, task_id: str, user_id: uuid.UUID) -> uuid.UUID:
    """A finished run that notified one webhook, written from another connection."""
    now = datetime.now(UTC)
    run = Execution(
        id=uuid.uuid4(),
        task_id=uuid.UUID(task_id),
        user_id=user_id,
        status=ExecutionStatus.SUCCESS,
        trigger=Trigger.SCHEDULE,
        created_at=now,
        started_at=now,
        completed_at=now,
        condition_met=True,
        change_summary="Announced at last.",
        result={
            "answer": "It is out",
            "condition_met": True,
            "current_state": None,
            "reasoning": "Read it.",
            "confidence": 0.9,
        },
        notification="It is out",
    )
    delivery = Delivery(
        id=uuid.uuid4(),
        execution_id=run.id,
        task_id=run.task_id,
        user_id=user_id,
        channel_index=0,
        channel_type="webhook",
        channel={"type": "webhook", "url": "https://hooks.example.com/x"},
        payload={},
    )
    delivery_id = delivery.id
    async with AsyncSession(engine) as session:
        session.add(run)
        await session.flush()
        session.add(delivery)
        await session.flush()
        session.add(_attempt(delivery_id, run.task_id, user_id, 500))
        await session.commit()
    return delivery_id


def _attempt(
    delivery_id: uuid.UUID, task_id: uuid.UUID, user_id: uuid.UUID, status_code: int
) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery_id=delivery_id,
        task_id=task_id,
        user_id=user_id,
        attempted_at=datetime.now(UTC),
        success=status_code < 300,
        status_code=status_code,
        duration_ms=5,
    )


async def test_a_second_visit_renders_nothing(
    as_alice: Browserless, alice: ApiUser, renders: list[str]
) -> None:
    task = await api_task(as_alice.client, alice, name="Cached one")
    for _ in range(3):
        assert "Cached one" in (await as_alice.get("/tasks")).text
        assert "Cached one" in (await as_alice.get(f"/tasks/{task['id']}")).text
    assert renders == ["tasks.html", "task.html"]


async def test_writes_through_the_app_are_on_the_next_page(
    as_alice: Browserless, alice: ApiUser
) -> None:
    task = await api_task(as_alice.client, alice, name="Before")
    assert "Before" in (await as_alice.get("/tasks")).text
    assert "Before" in (await as_alice.get(f"/tasks/{task['id']}")).text
    await as_alice.client.patch(
        f"/api/v1/tasks/{task['id']}", json={"name": "After"}, headers=alice.headers
    )
    for path in ("/tasks", f"/tasks/{task['id']}"):
        text = (await as_alice.get(path)).text
        assert "After" in text
        assert "Before" not in text
    await as_alice.post(f"/tasks/{task['id']}/pause")
    assert "Resume" in (await as_alice.get(f"/tasks/{task['id']}")).text
    assert "badge-paused" in (await as_alice.get("/tasks")).text


async def test_writes_from_another_connection_are_on_the_next_page(
    as_alice: Browserless, alice: ApiUser, other_connection: AsyncEngine
) -> None:
    task = await api_task(as_alice.client, alice, name="Before")
    assert "Before" in (await as_alice.get("/tasks")).text
    assert "No runs yet" in (await as_alice.get(f"/tasks/{task['id']}")).text
    async with other_connection.begin() as conn:
        await conn.execute(update(Task).values(name="Renamed elsewhere"))
    assert "Renamed elsewhere" in (await as_alice.get("/tasks")).text

    delivery = await _run_with_delivery(other_connection, task["id"], alice.id)
    page = (await as_alice.get(f"/tasks/{task['id']}")).text
    assert "Announced at last." in page
    assert "webhook: pending (500)" in page
    # Deliveries and their attempts move no tasks_version; the task page follows them anyway.
    async with other_connection.begin() as conn:
        await conn.execute(
            update(Delivery).where(Delivery.id == delivery).values(status=DeliveryStatus.FAILED)
        )
    assert "webhook: failed (500)" in (await as_alice.get(f"/tasks/{task['id']}")).text
    async with AsyncSession(other_connection) as session:
        session.add(_attempt(delivery, uuid.UUID(task["id"]), alice.id, 200))
        await session.commit()
    assert "webhook: failed (200)" in (await as_alice.get(f"/tasks/{task['id']}")).text


async def test_the_header_follows_the_users_email_and_role(
    as_alice: Browserless, alice: ApiUser, other_connection: AsyncEngine
) -> None:
    assert alice.email in (await as_alice.get("/tasks")).text
    async with other_connection.begin() as conn:
        await conn.execute(
            update(User).where(User.id == alice.id).values(email="new@example.com", role="admin")
        )
    page = (await as_alice.get("/tasks")).text
    assert "new@example.com" in page
    assert 'href="/manage"' in page


async def test_another_user_never_gets_a_cached_page(
    as_alice: Browserless, as_bob: Browserless, alice: ApiUser
) -> None:
    task = await api_task(as_alice.client, alice, name="The secret watch of Alice")
    assert "The secret watch of Alice" in (await as_alice.get("/tasks")).text
    assert (await as_alice.get(f"/tasks/{task['id']}")).status_code == 200
    theirs = await as_bob.get("/tasks")
    assert "The secret watch of Alice" not in theirs.text
    assert as_bob.user.email in theirs.text
    assert (await as_bob.get(f"/tasks/{task['id']}")).status_code == 404
    assert (await as_alice.get(f"/tasks/{task['id']}")).status_code == 200


async def test_each_session_gets_its_own_csrf_token(
    app: FastAPI, as_alice: Browserless, alice: ApiUser, renders: list[str]
) -> None:
    task = await api_task(as_alice.client, alice)
    second = await sign_in(app, alice)
    async with second.client:
        for path in ("/tasks", f"/tasks/{task['id']}"):
            for browser in (as_alice, second, as_alice):
                text = (await browser.get(path)).text
                assert set(CSRF_RE.findall(text)) == {browser.csrf_token}
                assert f'"X-CSRF-Token": "{browser.csrf_token}"' in text
                assert _state(app).pages.placeholder not in text
        assert renders == ["tasks.html", "task.html"]  # one page, three answers each
        # The token still works on the forms of a cached page.
        assert (await second.post(f"/tasks/{task['id']}/pause")).status_code == 303


async def test_an_ended_or_expired_session_gets_no_cached_page(
    app: FastAPI, as_alice: Browserless, alice: ApiUser, other_connection: AsyncEngine
) -> None:
    task = await api_task(as_alice.client, alice)
    second = await sign_in(app, alice)
    async with second.client:
        for browser in (as_alice, second):
            assert (await browser.get(f"/tasks/{task['id']}")).status_code == 200
        # Ended from another process (its sign-out everywhere, an operator's SQL).
        async with other_connection.begin() as conn:
            await conn.execute(delete(WebSession))
        for browser in (as_alice, second):
            assert (await browser.get(f"/tasks/{task['id']}")).status_code == 303
            assert (await browser.get("/tasks")).status_code == 303

    third = await sign_in(app, alice)
    async with third.client:
        assert (await third.get("/tasks")).status_code == 200
        # Nothing in the database changes when a session idles out: the clock alone ends it.
        idle = _state(app).settings.session_idle_seconds
        with time_machine.travel(datetime.now(UTC) + timedelta(seconds=idle + 5)):
            assert (await third.get("/tasks")).status_code == 303


async def test_a_deactivated_user_gets_no_cached_page(
    app: FastAPI, as_alice: Browserless, alice: ApiUser, other_connection: AsyncEngine
) -> None:
    assert (await as_alice.get("/tasks")).status_code == 200
    async with other_connection.begin() as conn:
        await conn.execute(update(User).where(User.id == alice.id).values(is_active=False))
    assert (await as_alice.get("/tasks")).status_code == 303


async def test_times_are_absolute_on_the_page(as_alice: Browserless, alice: ApiUser) -> None:
    task = await api_task(as_alice.client, alice, schedule="0 9 * * *", timezone="UTC")
    page = (await as_alice.get(f"/tasks/{task['id']}")).text
    next_run = datetime.fromisoformat(task["next_run"]).astimezone(UTC)
    assert (
        f'<time datetime="{next_run.isoformat(timespec="seconds")}" data-relative>'
        f"{next_run:%Y-%m-%d %H:%M} UTC</time>"
    ) in page
    assert not re.search(r"\bago\b|\bin \d+ (s|min|h|days)\b", page)


@pytest.mark.parametrize("settings_overrides", [{"page_cache_bytes": 0}])
async def test_the_cache_can_be_turned_off(as_alice: Browserless, renders: list[str]) -> None:
    for _ in range(2):
        assert (await as_alice.get("/tasks")).status_code == 200
    assert renders == ["tasks.html", "tasks.html"]


def test_pages_are_bounded_by_bytes() -> None:
    from torale.db.changes import ChangeWatch

    class Watching(ChangeWatch):
        caching = True

    cache = PageCache(4000, Watching())
    keys = [(uuid.uuid4(),) for _ in range(5)]
    for key in keys:
        cache.put(key, "x" * 900 + cache.placeholder + "y" * 90)  # type: ignore[arg-type]
    assert len(cache) == 4
    assert cache.get(keys[0]) is None  # type: ignore[arg-type]
    page = cache.get(keys[-1])  # type: ignore[arg-type]
    assert page is not None
    assert page.fill("TOKEN") == b"x" * 900 + b"TOKEN" + b"y" * 90
    cache.put(keys[0], "z" * 1001)  # type: ignore[arg-type]  # over a quarter: not kept
    assert cache.get(keys[0]) is None  # type: ignore[arg-type]
    assert PageCache(4000, ChangeWatch()).put(keys[0], "a").parts == (b"a",)  # type: ignore[arg-type]
    assert len(PageCache(4000, ChangeWatch())) == 0
