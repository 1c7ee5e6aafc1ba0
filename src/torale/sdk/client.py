"""`Torale` and `ToraleAsync`: the API as Python objects.

    from torale import Torale
    client = Torale()                      # TORALE_API_KEY / TORALE_API_URL / ~/.torale
    task = client.tasks.create("When is the next iPhone release?",
                               condition_description="Apple has announced a date")
    for task in client.tasks.list():       # every task, page after page
        print(task.name, task.state)

List methods iterate over everything; their `*_page` twins return one `Page`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

import httpx

from torale.sdk import calls
from torale.sdk.config import resolve
from torale.sdk.models import (
    ApiKey,
    ApiKeyCreated,
    DeliveryAttempt,
    Diff,
    Execution,
    FeedToken,
    FeedTokenCreated,
    NotifyBehavior,
    Page,
    PreviewResult,
    SourceSnapshot,
    Task,
    TaskState,
    TaskSuggestion,
    User,
    WebhookConfig,
    WebhookTestResult,
)
from torale.sdk.transport import Call, Policy, asend, send

T = TypeVar("T")
Id = uuid.UUID | str
# For annotations inside classes whose `list` method shadows the builtin: URLs, or targets
# {"url", "selector"}.
Urls = Sequence[str | dict[str, Any]]
Sources = list[SourceSnapshot]
PAGE_SIZE = 100


def _fields(**values: Any) -> dict[str, Any]:
    """Request fields, leaving out the ones not given (None)."""
    return {k: v for k, v in values.items() if v is not None}


def task_fields(
    search_query: str | None = None,
    *,
    condition_description: str | None = None,
    name: str | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    urls: list[str | dict[str, str]] | None = None,
    notify_behavior: NotifyBehavior | str | None = None,
    notifications: list[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
    mode: str | None = None,
    rules: dict[str, Any] | None = None,
    change: dict[str, Any] | None = None,
    context: Any = None,
    state: TaskState | str | None = None,
    run_immediately: bool | None = None,
    render: str | None = None,
    screenshot: bool | None = None,
) -> dict[str, Any]:
    """The body of POST /api/v1/tasks, leaving out what is not given (the server's defaults).
    `render="browser"` reads the task's pages with the server's browser (one a URL names in
    its own `render` wins); `screenshot` keeps a PNG of each page read so."""
    return _fields(
        search_query=search_query,
        condition_description=condition_description,
        name=name,
        schedule=schedule,
        timezone=timezone,
        urls=urls,
        notify_behavior=notify_behavior,
        notifications=notifications,
        config=config,
        mode=mode,
        rules=rules,
        change=change,
        context=context,
        state=state,
        run_immediately=run_immediately,
        render=render,
        screenshot=screenshot,
    )


def _pages(fetch: Callable[[int], Page[T]]) -> Iterator[T]:
    page = 1
    while True:
        current = fetch(page)
        yield from current.items
        if not current.items or page * current.limit >= current.total:
            return
        page += 1


async def _apages(fetch: Callable[[int], Any]) -> AsyncIterator[Any]:
    page = 1
    while True:
        current: Page[Any] = await fetch(page)
        for item in current.items:
            yield item
        if not current.items or page * current.limit >= current.total:
            return
        page += 1


# --- sync --------------------------------------------------------------------------------


class _Sync:
    def __init__(self, client: Torale) -> None:
        self._client = client

    def _run(self, call: Call[T]) -> T:
        return send(self._client.http, self._client.policy, call)


class Tasks(_Sync):
    def create(self, search_query: str | None = None, **fields: Any) -> Task:
        return self._run(calls.create_task(task_fields(search_query, **fields)))

    def list(self, *, state: str | None = None, is_active: bool | None = None) -> Iterator[Task]:
        return _pages(
            lambda n: self.list_page(page=n, limit=PAGE_SIZE, state=state, is_active=is_active)
        )

    def list_page(
        self,
        *,
        page: int = 1,
        limit: int = 20,
        state: str | None = None,
        is_active: bool | None = None,
    ) -> Page[Task]:
        result: Page[Task] = self._run(calls.list_tasks(page, limit, state, is_active))
        return result

    def get(self, task_id: Id) -> Task:
        return self._run(calls.get_task(task_id))

    def update(self, task_id: Id, **fields: Any) -> Task:
        """Change only the fields given; one given as None is sent as null (it clears
        `condition_description` back to the query, or `context`)."""
        return self._run(calls.update_task(task_id, fields))

    def pause(self, task_id: Id) -> Task:
        return self.update(task_id, state="paused")

    def resume(self, task_id: Id) -> Task:
        return self.update(task_id, state="active")

    def delete(self, task_id: Id) -> None:
        self._run(calls.delete_task(task_id))

    def execute(self, task_id: Id, *, wait: bool = False) -> Execution:
        return self._run(calls.execute_task(task_id, wait))

    def executions(self, task_id: Id) -> Iterator[Execution]:
        return _pages(lambda n: self.executions_page(task_id, page=n, limit=PAGE_SIZE))

    def executions_page(self, task_id: Id, *, page: int = 1, limit: int = 20) -> Page[Execution]:
        result: Page[Execution] = self._run(
            calls.task_executions(task_id, page, limit, notified=False)
        )
        return result

    def sources(self, task_id: Id, execution_id: Id) -> Sources:
        """What a run read: each source with the hash of its text."""
        return self._run(calls.execution_sources(task_id, execution_id))

    def diff(self, task_id: Id, *, from_: Id | None = None, to: Id | None = None) -> Diff:
        """What changed between two runs (default: the last two that kept their sources)."""
        return self._run(calls.task_diff(task_id, from_, to))

    def notifications(self, task_id: Id) -> Iterator[Execution]:
        return _pages(lambda n: self.notifications_page(task_id, page=n, limit=PAGE_SIZE))

    def notifications_page(self, task_id: Id, *, page: int = 1, limit: int = 20) -> Page[Execution]:
        result: Page[Execution] = self._run(
            calls.task_executions(task_id, page, limit, notified=True)
        )
        return result

    def preview(
        self,
        search_query: str | None = None,
        *,
        condition_description: str | None = None,
        urls: Urls | None = None,
        config: dict[str, Any] | None = None,
        mode: str | None = None,
        rules: dict[str, Any] | None = None,
        change: dict[str, Any] | None = None,
        task_id: Id | None = None,
    ) -> PreviewResult:
        """Run a task once without saving it; with `task_id` (one of your tasks), compared
        with that task's latest run as its next run would be."""
        fields = _fields(
            search_query=search_query,
            condition_description=condition_description,
            urls=urls,
            config=config,
            mode=mode,
            rules=rules,
            change=change,
            task_id=str(task_id) if task_id is not None else None,
        )
        return self._run(calls.preview(fields))

    def suggest(self, prompt: str) -> TaskSuggestion:
        """A task drafted by the server's model from `prompt` (nothing is saved): create it
        with `create(**suggestion.task.fields())`."""
        return self._run(calls.suggest_task(prompt))


class Webhooks(_Sync):
    def get_config(self) -> WebhookConfig:
        return self._run(calls.webhook_config())

    def update_config(self, **fields: Any) -> WebhookConfig:
        """`url=` (None removes it) and/or `enabled=`; only the fields given change."""
        return self._run(calls.update_webhook_config(fields))

    def rotate_secret(self) -> WebhookConfig:
        return self._run(calls.rotate_webhook_secret())

    def test(self, url: str | None = None) -> WebhookTestResult:
        return self._run(calls.send_test_webhook(url))

    def deliveries(self, *, task_id: Id | None = None) -> Iterator[DeliveryAttempt]:
        return _pages(lambda n: self.deliveries_page(page=n, limit=PAGE_SIZE, task_id=task_id))

    def deliveries_page(
        self, *, page: int = 1, limit: int = 20, task_id: Id | None = None
    ) -> Page[DeliveryAttempt]:
        result: Page[DeliveryAttempt] = self._run(calls.deliveries(page, limit, task_id))
        return result


class Feeds(_Sync):
    """Your Atom feeds' token. It is stored as a hash: only `rotate()` shows it (and the URLs)."""

    def token(self) -> FeedToken:
        return self._run(calls.feed_token())

    def rotate(self) -> FeedTokenCreated:
        """A new token (the old feed URLs stop at once), with the feed URLs that carry it."""
        return self._run(calls.rotate_feed_token())

    def turn_off(self) -> FeedToken:
        """Remove the token: every feed URL stops until `rotate()` makes a new one."""
        return self._run(calls.delete_feed_token())


class Auth(_Sync):
    def me(self) -> User:
        return self._run(calls.me())

    def api_keys(self) -> Iterator[ApiKey]:
        return _pages(lambda n: self._run(calls.list_api_keys(n, PAGE_SIZE)))

    def create_api_key(self, name: str) -> ApiKeyCreated:
        return self._run(calls.create_api_key(name))

    def revoke_api_key(self, key_id: Id) -> None:
        self._run(calls.revoke_api_key(key_id))


class Torale:
    """The API, synchronously. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        timeout: float | httpx.Timeout = 60,
        *,
        max_retries: int = 3,
    ) -> None:
        connection = resolve(api_key, api_url)
        self.api_url = connection.api_url
        self.policy = Policy(api_key=connection.api_key, max_retries=max_retries)
        self.http = httpx.Client(
            base_url=self.api_url, timeout=timeout, headers=self.policy.headers()
        )
        self.tasks = Tasks(self)
        self.webhooks = Webhooks(self)
        self.feeds = Feeds(self)
        self.auth = Auth(self)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Torale:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- async -------------------------------------------------------------------------------


class _Async:
    def __init__(self, client: ToraleAsync) -> None:
        self._client = client

    async def _run(self, call: Call[T]) -> T:
        return await asend(self._client.http, self._client.policy, call)


class AsyncTasks(_Async):
    async def create(self, search_query: str | None = None, **fields: Any) -> Task:
        return await self._run(calls.create_task(task_fields(search_query, **fields)))

    def list(
        self, *, state: str | None = None, is_active: bool | None = None
    ) -> AsyncIterator[Task]:
        return _apages(
            lambda n: self.list_page(page=n, limit=PAGE_SIZE, state=state, is_active=is_active)
        )

    async def list_page(
        self,
        *,
        page: int = 1,
        limit: int = 20,
        state: str | None = None,
        is_active: bool | None = None,
    ) -> Page[Task]:
        result: Page[Task] = await self._run(calls.list_tasks(page, limit, state, is_active))
        return result

    async def get(self, task_id: Id) -> Task:
        return await self._run(calls.get_task(task_id))

    async def update(self, task_id: Id, **fields: Any) -> Task:
        return await self._run(calls.update_task(task_id, fields))

    async def pause(self, task_id: Id) -> Task:
        return await self.update(task_id, state="paused")

    async def resume(self, task_id: Id) -> Task:
        return await self.update(task_id, state="active")

    async def delete(self, task_id: Id) -> None:
        await self._run(calls.delete_task(task_id))

    async def execute(self, task_id: Id, *, wait: bool = False) -> Execution:
        return await self._run(calls.execute_task(task_id, wait))

    def executions(self, task_id: Id) -> AsyncIterator[Execution]:
        return _apages(lambda n: self.executions_page(task_id, page=n, limit=PAGE_SIZE))

    async def executions_page(
        self, task_id: Id, *, page: int = 1, limit: int = 20
    ) -> Page[Execution]:
        result: Page[Execution] = await self._run(
            calls.task_executions(task_id, page, limit, notified=False)
        )
        return result

    async def sources(self, task_id: Id, execution_id: Id) -> Sources:
        """What a run read: each source with the hash of its text."""
        return await self._run(calls.execution_sources(task_id, execution_id))

    async def diff(self, task_id: Id, *, from_: Id | None = None, to: Id | None = None) -> Diff:
        """What changed between two runs (default: the last two that kept their sources)."""
        return await self._run(calls.task_diff(task_id, from_, to))

    def notifications(self, task_id: Id) -> AsyncIterator[Execution]:
        return _apages(lambda n: self.notifications_page(task_id, page=n, limit=PAGE_SIZE))

    async def notifications_page(
        self, task_id: Id, *, page: int = 1, limit: int = 20
    ) -> Page[Execution]:
        result: Page[Execution] = await self._run(
            calls.task_executions(task_id, page, limit, notified=True)
        )
        return result

    async def preview(
        self,
        search_query: str | None = None,
        *,
        condition_description: str | None = None,
        urls: Urls | None = None,
        config: dict[str, Any] | None = None,
        mode: str | None = None,
        rules: dict[str, Any] | None = None,
        change: dict[str, Any] | None = None,
        task_id: Id | None = None,
    ) -> PreviewResult:
        """Run a task once without saving it; with `task_id` (one of your tasks), compared
        with that task's latest run as its next run would be."""
        fields = _fields(
            search_query=search_query,
            condition_description=condition_description,
            urls=urls,
            config=config,
            mode=mode,
            rules=rules,
            change=change,
            task_id=str(task_id) if task_id is not None else None,
        )
        return await self._run(calls.preview(fields))

    async def suggest(self, prompt: str) -> TaskSuggestion:
        """A task drafted by the server's model from `prompt` (nothing is saved)."""
        return await self._run(calls.suggest_task(prompt))


class AsyncWebhooks(_Async):
    async def get_config(self) -> WebhookConfig:
        return await self._run(calls.webhook_config())

    async def update_config(self, **fields: Any) -> WebhookConfig:
        return await self._run(calls.update_webhook_config(fields))

    async def rotate_secret(self) -> WebhookConfig:
        return await self._run(calls.rotate_webhook_secret())

    async def test(self, url: str | None = None) -> WebhookTestResult:
        return await self._run(calls.send_test_webhook(url))

    def deliveries(self, *, task_id: Id | None = None) -> AsyncIterator[DeliveryAttempt]:
        return _apages(lambda n: self.deliveries_page(page=n, limit=PAGE_SIZE, task_id=task_id))

    async def deliveries_page(
        self, *, page: int = 1, limit: int = 20, task_id: Id | None = None
    ) -> Page[DeliveryAttempt]:
        result: Page[DeliveryAttempt] = await self._run(calls.deliveries(page, limit, task_id))
        return result


class AsyncFeeds(_Async):
    """Your Atom feeds' token. It is stored as a hash: only `rotate()` shows it (and the URLs)."""

    async def token(self) -> FeedToken:
        return await self._run(calls.feed_token())

    async def rotate(self) -> FeedTokenCreated:
        """A new token (the old feed URLs stop at once), with the feed URLs that carry it."""
        return await self._run(calls.rotate_feed_token())

    async def turn_off(self) -> FeedToken:
        """Remove the token: every feed URL stops until `rotate()` makes a new one."""
        return await self._run(calls.delete_feed_token())


class AsyncAuth(_Async):
    async def me(self) -> User:
        return await self._run(calls.me())

    def api_keys(self) -> AsyncIterator[ApiKey]:
        return _apages(lambda n: self._run(calls.list_api_keys(n, PAGE_SIZE)))

    async def create_api_key(self, name: str) -> ApiKeyCreated:
        return await self._run(calls.create_api_key(name))

    async def revoke_api_key(self, key_id: Id) -> None:
        await self._run(calls.revoke_api_key(key_id))


class ToraleAsync:
    """The API, with asyncio. Use it as an async context manager, or await `aclose()`."""

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        timeout: float | httpx.Timeout = 60,
        *,
        max_retries: int = 3,
    ) -> None:
        connection = resolve(api_key, api_url)
        self.api_url = connection.api_url
        self.policy = Policy(api_key=connection.api_key, max_retries=max_retries)
        self.http = httpx.AsyncClient(
            base_url=self.api_url, timeout=timeout, headers=self.policy.headers()
        )
        self.tasks = AsyncTasks(self)
        self.webhooks = AsyncWebhooks(self)
        self.feeds = AsyncFeeds(self)
        self.auth = AsyncAuth(self)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> ToraleAsync:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
