"""`ToraleAsync` against the real server: the same surface as `Torale`, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest

import torale.sdk.client as sdk_client
from tests.fakes import WebhookReceiver
from tests.fixtures.api_server import NEWS_TITLE, Api, Fakes
from tests.fixtures.engine import DRAFT, MET
from tests.fixtures.sdk_examples import CONDITION, QUERY, UNKNOWN_ID, await_until
from torale.sdk import (
    ApiKey,
    ApiKeyCreated,
    AuthenticationError,
    DeliveryAttempt,
    Execution,
    NotFoundError,
    Page,
    PreviewResult,
    Source,
    Task,
    TaskSuggestion,
    ToraleAsync,
    User,
    ValidationError,
    WebhookConfig,
    WebhookTestResult,
)

T = TypeVar("T")


async def collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


@pytest.fixture
async def client(api: Api, user_key: str) -> AsyncIterator[ToraleAsync]:
    async with ToraleAsync(api_key=user_key, api_url=api.url) as c:
        yield c


async def test_task_lifecycle(client: ToraleAsync) -> None:
    task = await client.tasks.create(
        QUERY,
        condition_description=CONDITION,
        name="iPhone release",
        schedule="@daily",
        timezone="Europe/Berlin",
        notify_behavior="track_state",
        context=["any", "json"],
    )
    assert isinstance(task, Task)
    assert (task.name, task.schedule, task.timezone) == (
        "iPhone release",
        "0 0 * * *",
        "Europe/Berlin",
    )
    assert (task.notify_behavior, task.context, task.state) == (
        "track_state",
        ["any", "json"],
        "active",
    )

    assert (await client.tasks.get(task.id)).name == "iPhone release"
    updated = await client.tasks.update(task.id, search_query="iPhone 18 release date")
    assert updated.search_query == "iPhone 18 release date"
    assert updated.condition_description == CONDITION

    paused = await client.tasks.pause(task.id)
    assert (paused.state, paused.next_run) == ("paused", None)
    assert [t.id for t in await collect(client.tasks.list(state="paused"))] == [task.id]
    assert await collect(client.tasks.list(is_active=True)) == []
    resumed = await client.tasks.resume(task.id)
    assert resumed.state == "active"
    assert resumed.next_run is not None

    await client.tasks.delete(task.id)
    with pytest.raises(NotFoundError):
        await client.tasks.get(task.id)
    assert await collect(client.tasks.list()) == []


async def test_execute_wait_and_the_history(client: ToraleAsync, fakes: Fakes) -> None:
    task = await client.tasks.create(
        QUERY, condition_description=CONDITION, notify_behavior="always"
    )
    run = await client.tasks.execute(task.id, wait=True)
    assert isinstance(run, Execution)
    assert (run.status, run.condition_met, run.trigger) == ("success", True, "manual")
    assert run.result is not None
    assert run.result.answer == MET["answer"]
    assert run.grounding_sources == [Source(url=fakes.news_url, title=NEWS_TITLE)]

    started = await client.tasks.execute(task.id)
    assert started.status in ("pending", "running")

    async def both_finished() -> list[Execution] | None:
        runs = await collect(client.tasks.executions(task.id))
        return runs if all(r.status == "success" for r in runs) and len(runs) == 2 else None

    runs = await await_until(both_finished, what="both runs to finish")
    assert [r.id for r in runs] == [started.id, run.id]
    page = await client.tasks.executions_page(task.id, limit=1, page=2)
    assert isinstance(page, Page)
    assert (page.total, [e.id for e in page.items]) == (2, [run.id])

    notified = await collect(client.tasks.notifications(task.id))
    assert [e.id for e in notified] == [started.id, run.id]
    first = await client.tasks.notifications_page(task.id, limit=1)
    assert (first.total, [e.id for e in first.items]) == (2, [started.id])


async def test_preview(client: ToraleAsync, fakes: Fakes) -> None:
    result = await client.tasks.preview(QUERY, condition_description=CONDITION)
    assert isinstance(result, PreviewResult)
    assert (result.answer, result.condition_met) == (MET["answer"], True)
    assert result.grounding_sources == [Source(url=fakes.news_url, title=NEWS_TITLE)]
    assert await collect(client.tasks.list()) == []


async def test_suggest(client: ToraleAsync) -> None:
    suggestion = await client.tasks.suggest("tell me when the next iPhone is announced")
    assert isinstance(suggestion, TaskSuggestion)
    assert (suggestion.task.name, suggestion.explanation) == (DRAFT["name"], DRAFT["explanation"])
    assert await collect(client.tasks.list()) == []


async def test_list_page_and_async_iteration_over_pages(
    client: ToraleAsync, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [await client.tasks.create(f"query {n}") for n in range(5)]
    newest_first = [t.id for t in reversed(made)]
    page = await client.tasks.list_page(page=3, limit=2)
    assert (page.total, page.page, [t.id for t in page.items]) == (5, 3, newest_first[4:])

    requested: list[Any] = []
    real_list_page = client.tasks.list_page

    async def counting_list_page(**kwargs: Any) -> Page[Task]:
        requested.append(kwargs["page"])
        return await real_list_page(**kwargs)

    monkeypatch.setattr(sdk_client, "PAGE_SIZE", 2)
    monkeypatch.setattr(client.tasks, "list_page", counting_list_page)
    assert [t.id for t in await collect(client.tasks.list())] == newest_first
    assert requested == [1, 2, 3]


async def test_webhooks(client: ToraleAsync, receiver: WebhookReceiver) -> None:
    config = await client.webhooks.get_config()
    assert isinstance(config, WebhookConfig)
    receiver.secret = config.secret
    hook = receiver.url_for("/async")
    assert (await client.webhooks.update_config(url=hook)).url == hook

    result = await client.webhooks.test()
    assert isinstance(result, WebhookTestResult)
    assert (result.delivered, result.status_code, result.url) == (True, 200, hook)
    (got,) = await receiver.wait_for(1)
    assert got.verified
    assert got.event["event_type"] == "webhook.test"

    with pytest.raises(ValidationError) as refused:
        await client.webhooks.test("http://10.1.2.3/hook")  # private address: refused
    assert refused.value.errors[0]["loc"] == ["body", "url"]

    rotated = await client.webhooks.rotate_secret()
    assert rotated.secret != config.secret
    assert (await client.webhooks.update_config(url=None)).url is None

    task = await client.tasks.create(
        QUERY, notify_behavior="always", notifications=[{"type": "webhook", "url": hook}]
    )
    receiver.secret = rotated.secret
    run = await client.tasks.execute(task.id, wait=True)

    async def delivered() -> list[DeliveryAttempt]:
        return [a for a in await collect(client.webhooks.deliveries(task_id=task.id)) if a.success]

    (attempt,) = await await_until(delivered, what="the webhook delivery")
    assert (attempt.execution_id, attempt.target, attempt.status_code) == (run.id, hook, 200)
    page = await client.webhooks.deliveries_page(task_id=task.id)
    assert [a.id for a in page.items] == [attempt.id]
    assert any(r.event["event_type"] == "task.condition_met" for r in receiver.accepted())


async def test_auth(client: ToraleAsync, api: Api) -> None:
    me = await client.auth.me()
    assert isinstance(me, User)
    assert me.role == "user"
    (key,) = await collect(client.auth.api_keys())
    assert isinstance(key, ApiKey)

    created = await client.auth.create_api_key("ci")
    assert isinstance(created, ApiKeyCreated)
    async with ToraleAsync(api_key=created.key, api_url=api.url) as other:
        assert (await other.auth.me()).id == me.id
        assert {k.name for k in await collect(client.auth.api_keys())} == {key.name, "ci"}
        await client.auth.revoke_api_key(created.key_info.id)
        with pytest.raises(AuthenticationError):
            await other.auth.me()


async def test_errors_are_the_same_exceptions(client: ToraleAsync) -> None:
    with pytest.raises(NotFoundError) as missing:
        await client.tasks.get(UNKNOWN_ID)
    assert missing.value.status_code == 404
    with pytest.raises(ValidationError) as invalid:
        await client.tasks.create(QUERY, schedule="every tuesday")
    assert [e["loc"] for e in invalid.value.errors] == [["body", "schedule"]]


async def test_aclose_closes_the_connection_pool(api: Api, user_key: str) -> None:
    client = ToraleAsync(api_key=user_key, api_url=api.url)
    assert (await client.auth.me()).role == "user"
    await client.aclose()
    assert client.http.is_closed
