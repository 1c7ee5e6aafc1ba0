"""`Torale` (sync) against the real server: every method, typed answers, real effects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

import torale
import torale.sdk.client as sdk_client
from tests.fakes import WebhookReceiver
from tests.fixtures.api_server import NEWS_TITLE, Api, Fakes
from tests.fixtures.engine import DRAFT, MET
from tests.fixtures.sdk_examples import CONDITION, QUERY, wait_until
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
    Torale,
    User,
    ValidationError,
    WebhookConfig,
    WebhookTestResult,
)


@pytest.fixture
def client(api: Api, user_key: str) -> Iterator[Torale]:
    with Torale(api_key=user_key, api_url=api.url) as c:
        yield c


def test_the_package_reexports_the_sdk() -> None:
    from torale import Torale as Reexported
    from torale import ToraleAsync, monitor

    assert Reexported is Torale
    assert ToraleAsync is torale.sdk.ToraleAsync
    assert monitor is torale.sdk.monitor


def test_task_create_get_update_pause_resume_delete(client: Torale) -> None:
    task = client.tasks.create(
        QUERY,
        condition_description=CONDITION,
        name="iPhone release",
        schedule="0 9 * * *",
        timezone="Europe/Berlin",
        urls=["https://www.apple.com/newsroom/"],
        notify_behavior="track_state",
        notifications=[{"type": "email", "address": "me@example.com"}],
        config={"search_provider": "searxng"},
        context={"team": "mobile"},
    )
    assert isinstance(task, Task)
    assert (task.name, task.search_query, task.condition_description) == (
        "iPhone release",
        QUERY,
        CONDITION,
    )
    assert (task.schedule, task.timezone, task.notify_behavior) == (
        "0 9 * * *",
        "Europe/Berlin",
        "track_state",
    )
    assert task.urls == ["https://www.apple.com/newsroom/"]
    assert [c.model_dump() for c in task.notifications] == [
        {"type": "email", "address": "me@example.com"}
    ]
    assert task.config.search_provider == "searxng"
    assert task.context == {"team": "mobile"}
    assert task.state == "active"
    assert task.next_run is not None

    fetched = client.tasks.get(task.id)
    assert fetched.model_dump(exclude={"updated_at"}) == task.model_dump(exclude={"updated_at"})
    assert client.tasks.get(str(task.id)).id == task.id  # str ids work as well as UUIDs

    updated = client.tasks.update(task.id, schedule="0 */6 * * *", name="Renamed")
    assert (updated.schedule, updated.name) == ("0 */6 * * *", "Renamed")
    assert updated.condition_description == CONDITION  # untouched
    cleared = client.tasks.update(task.id, condition_description=None, context=None)
    assert cleared.condition_description == QUERY  # follows the query again
    assert cleared.context is None
    assert client.tasks.get(task.id).schedule == "0 */6 * * *"

    paused = client.tasks.pause(task.id)
    assert (paused.state, paused.next_run, paused.is_active) == ("paused", None, False)
    assert [t.id for t in client.tasks.list(state="paused")] == [task.id]
    assert list(client.tasks.list(state="active")) == []
    resumed = client.tasks.resume(task.id)
    assert resumed.state == "active"
    assert resumed.next_run is not None
    assert [t.id for t in client.tasks.list(is_active=True)] == [task.id]

    client.tasks.delete(task.id)
    with pytest.raises(NotFoundError):
        client.tasks.get(task.id)
    assert list(client.tasks.list()) == []


def test_execute_wait_returns_the_finished_run_with_the_models_verdict(
    client: Torale, fakes: Fakes
) -> None:
    task = client.tasks.create(QUERY, condition_description=CONDITION, notify_behavior="always")
    calls_before = fakes.model.calls
    run = client.tasks.execute(task.id, wait=True)
    assert isinstance(run, Execution)
    assert run.task_id == task.id
    assert (run.status, run.trigger, run.condition_met) == ("success", "manual", True)
    assert run.completed_at is not None
    assert run.result is not None
    assert run.result.answer == MET["answer"]
    assert run.result.current_state == MET["current_state"]
    assert run.grounding_sources == [Source(url=fakes.news_url, title=NEWS_TITLE)]
    assert run.notification is not None
    assert MET["answer"] in run.notification
    assert fakes.model.calls > calls_before  # the model was really asked

    after = client.tasks.get(task.id)
    assert after.condition_met is True
    assert after.last_execution is not None
    assert after.last_execution.id == run.id

    assert [e.id for e in client.tasks.executions(task.id)] == [run.id]
    assert [e.id for e in client.tasks.notifications(task.id)] == [run.id]


def test_execute_without_wait_answers_at_once_and_the_run_finishes(client: Torale) -> None:
    task = client.tasks.create(QUERY, notify_behavior="always")
    started = client.tasks.execute(task.id)
    assert started.status in ("pending", "running")
    assert started.result is None

    def finished() -> Execution | None:
        runs = [e for e in client.tasks.executions(task.id) if e.id == started.id]
        return runs[0] if runs and runs[0].status in ("success", "failed") else None

    done = wait_until(finished, what="the run to finish")
    assert done.status == "success", done.error_message
    assert done.result is not None
    assert done.result.answer == MET["answer"]


def test_executions_and_notifications_pages(client: Torale) -> None:
    task = client.tasks.create(QUERY, notify_behavior="always")
    first = client.tasks.execute(task.id, wait=True)
    second = client.tasks.execute(task.id, wait=True)
    assert first.id != second.id

    page = client.tasks.executions_page(task.id, limit=1)
    assert isinstance(page, Page)
    assert (page.total, page.page, page.limit) == (2, 1, 1)
    assert [e.id for e in page.items] == [second.id]  # newest first
    assert [e.id for e in client.tasks.executions_page(task.id, page=2, limit=1).items] == [
        first.id
    ]
    assert client.tasks.executions_page(task.id, page=3, limit=1).items == []
    assert [e.id for e in client.tasks.executions(task.id)] == [second.id, first.id]

    notified = client.tasks.notifications_page(task.id, limit=1)
    assert notified.total == 2
    assert [e.id for e in client.tasks.notifications(task.id)] == [second.id, first.id]


def test_preview_runs_the_engine_and_saves_nothing(client: Torale, fakes: Fakes) -> None:
    result = client.tasks.preview(QUERY, condition_description=CONDITION)
    assert isinstance(result, PreviewResult)
    assert result.answer == MET["answer"]
    assert result.condition_met is True
    assert result.grounding_sources == [Source(url=fakes.news_url, title=NEWS_TITLE)]
    assert result.usage.llm_calls == 1
    with_urls = client.tasks.preview(
        QUERY, urls=[fakes.news_url], config={"search_provider": "none"}
    )
    assert [s.url for s in with_urls.grounding_sources] == [fakes.news_url]
    assert list(client.tasks.list()) == []


def test_suggest_drafts_a_task_and_saves_nothing(client: Torale) -> None:
    suggestion = client.tasks.suggest("tell me when the next iPhone is announced")
    assert isinstance(suggestion, TaskSuggestion)
    assert suggestion.explanation == DRAFT["explanation"]
    draft = suggestion.task
    assert (draft.name, draft.search_query) == (DRAFT["name"], DRAFT["search_query"])
    assert draft.schedule == "0 0 * * *"  # validated by the server: @daily as 5 fields
    assert list(client.tasks.list()) == []
    assert draft.fields() == {
        "name": DRAFT["name"],
        "search_query": DRAFT["search_query"],
        "condition_description": DRAFT["condition_description"],
        "schedule": "0 0 * * *",
        "timezone": "UTC",
        "notify_behavior": "once",
    }
    task = client.tasks.create(**draft.fields())
    assert (task.name, task.mode, task.schedule) == (DRAFT["name"], "model", "0 0 * * *")
    with pytest.raises(ValidationError) as refused:
        client.tasks.suggest("")
    assert refused.value.errors[0]["loc"] == ["body", "prompt"]


def test_list_page_and_the_iterator_walk_every_page(
    client: Torale, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [client.tasks.create(f"query {n}", name=f"task {n}") for n in range(5)]
    newest_first = [t.id for t in reversed(made)]

    first = client.tasks.list_page(limit=2)
    assert isinstance(first, Page)
    assert (first.total, first.page, first.limit) == (5, 1, 2)
    assert all(isinstance(t, Task) for t in first.items)
    pages = [client.tasks.list_page(page=n, limit=2) for n in (1, 2, 3, 4)]
    assert [[t.id for t in p.items] for p in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]

    # The iterator asks for PAGE_SIZE (100) at a time; with 2 it must walk three pages.
    requested: list[int] = []
    real_list_page = client.tasks.list_page

    def counting_list_page(**kwargs: object) -> Page[Task]:
        requested.append(int(str(kwargs["page"])))
        return real_list_page(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sdk_client, "PAGE_SIZE", 2)
    monkeypatch.setattr(client.tasks, "list_page", counting_list_page)
    assert [t.id for t in client.tasks.list()] == newest_first
    assert requested == [1, 2, 3]


def test_the_iterator_goes_past_one_hundred(client: Torale, api: Api, user_key: str) -> None:
    with httpx.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {user_key}"}, timeout=30
    ) as http:
        for n in range(105):
            response = http.post("/api/v1/tasks", json={"search_query": f"q{n}"})
            assert response.status_code == 200, response.text
    queries = [t.search_query for t in client.tasks.list()]
    assert len(queries) == 105
    assert len(set(queries)) == 105
    assert queries[0] == "q104"
    assert queries[-1] == "q0"


def test_webhook_config_test_and_rotate(client: Torale, receiver: WebhookReceiver) -> None:
    config = client.webhooks.get_config()
    assert isinstance(config, WebhookConfig)
    assert config.url is None
    assert config.secret.startswith("whsec_")
    receiver.secret = config.secret

    hook = receiver.url_for("/torale")
    updated = client.webhooks.update_config(url=hook)
    assert (updated.url, updated.secret) == (hook, config.secret)
    assert client.webhooks.get_config().url == hook

    result = client.webhooks.test()  # to the configured URL
    assert isinstance(result, WebhookTestResult)
    assert (result.delivered, result.status_code, result.url) == (True, 200, hook)
    (got,) = receiver.received
    assert got.verified, got.verify_error  # signed with the user's secret
    assert got.path == "/torale"
    assert got.webhook_id == result.webhook_id
    assert got.event["event_type"] == "webhook.test"

    elsewhere = client.webhooks.test(receiver.url_for("/other"))
    assert elsewhere.delivered
    assert receiver.received[-1].path == "/other"

    rotated = client.webhooks.rotate_secret()
    assert rotated.secret != config.secret
    assert rotated.secret.startswith("whsec_")
    assert client.webhooks.update_config(enabled=False).enabled is False
    cleared = client.webhooks.update_config(url=None)
    assert cleared.url is None
    assert cleared.enabled is False


def test_deliveries_list_the_attempts_of_a_runs_notification(
    client: Torale, receiver: WebhookReceiver
) -> None:
    receiver.secret = client.webhooks.get_config().secret
    hook = receiver.url_for("/task-hook")
    task = client.tasks.create(
        QUERY, notify_behavior="always", notifications=[{"type": "webhook", "url": hook}]
    )
    other = client.tasks.create("another query")
    run = client.tasks.execute(task.id, wait=True)
    assert run.notification is not None

    def delivered() -> list[DeliveryAttempt]:
        return [a for a in client.webhooks.deliveries(task_id=task.id) if a.success]

    (attempt,) = wait_until(delivered, what="the webhook delivery")
    assert isinstance(attempt, DeliveryAttempt)
    assert (attempt.task_id, attempt.execution_id) == (task.id, run.id)
    assert (attempt.channel_type, attempt.target, attempt.status_code) == ("webhook", hook, 200)
    assert attempt.delivery_status == "delivered"
    (got,) = receiver.accepted()
    assert got.event["event_type"] == "task.condition_met"
    assert got.event["data"]["execution"]["id"] == str(run.id)

    assert [a.id for a in client.webhooks.deliveries()] == [attempt.id]
    assert list(client.webhooks.deliveries(task_id=other.id)) == []
    page = client.webhooks.deliveries_page(limit=1)
    assert (page.total, [a.id for a in page.items]) == (1, [attempt.id])


def test_auth_me_and_api_keys(client: Torale, api: Api) -> None:
    me = client.auth.me()
    assert isinstance(me, User)
    assert me.role == "user"
    assert me.is_active
    assert me.email is not None
    assert me.email.endswith("@example.com")

    (only,) = list(client.auth.api_keys())
    assert isinstance(only, ApiKey)
    assert only.is_active

    created = client.auth.create_api_key("laptop")
    assert isinstance(created, ApiKeyCreated)
    assert created.key.startswith("sk_")
    assert created.key_info.key_prefix == created.key[:12]
    with Torale(api_key=created.key, api_url=api.url) as laptop:
        assert laptop.auth.me().id == me.id
        keys = {k.name: k for k in client.auth.api_keys()}
        assert set(keys) == {only.name, "laptop"}
        client.auth.revoke_api_key(created.key_info.id)
        with pytest.raises(AuthenticationError):
            laptop.auth.me()
    revoked = {k.id: k for k in client.auth.api_keys()}[created.key_info.id]
    assert revoked.is_active is False


def test_the_bootstrap_admin(api: Api) -> None:
    with Torale(api_key=api.admin_key, api_url=api.url) as admin:
        me = admin.auth.me()
    assert (me.email, me.role) == ("admin@localhost", "admin")


def test_another_users_task_is_not_found(client: Torale, api: Api) -> None:
    task = client.tasks.create(QUERY)
    with Torale(api_key=api.admin_key, api_url=api.url) as admin:
        with pytest.raises(NotFoundError):
            admin.tasks.get(task.id)
        with pytest.raises(NotFoundError):
            admin.tasks.execute(task.id)
    assert client.tasks.get(task.id).id == task.id


def test_a_malformed_id_fails_before_sending(client: Torale) -> None:
    with pytest.raises(ValueError, match="badly formed"):
        client.tasks.get("not-a-uuid")
    assert isinstance(uuid.UUID(str(client.tasks.create(QUERY).id)), uuid.UUID)
