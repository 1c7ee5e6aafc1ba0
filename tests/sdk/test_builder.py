"""The fluent builder: schedule phrases become crons, and create() makes the task it describes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.api_server import Api
from tests.fixtures.sdk_examples import CONDITION, QUERY
from torale import Torale, ToraleAsync, monitor
from torale.sdk import Monitor, ValidationError
from torale.sdk.builder import schedule_for


@pytest.fixture
def client(api: Api, user_key: str) -> Iterator[Torale]:
    with Torale(api_key=user_key, api_url=api.url) as c:
        yield c


@pytest.mark.parametrize(
    ("phrase", "cron"),
    [
        ("6 hours", "0 */6 * * *"),
        ("every 6 hours", "0 */6 * * *"),
        ("  12   HOURS ", "0 */12 * * *"),
        ("hour", "0 * * * *"),
        ("1 hour", "0 * * * *"),
        ("hourly", "0 * * * *"),
        ("30 minutes", "*/30 * * * *"),
        ("15 minutes", "*/15 * * * *"),
        ("minute", "* * * * *"),
        ("day", "0 9 * * *"),
        ("1 day", "0 9 * * *"),
        ("daily", "0 9 * * *"),
        ("Daily", "0 9 * * *"),
        ("week", "0 9 * * 1"),
        ("weekly", "0 9 * * 1"),
        ("0 8 * * 1-5", "0 8 * * 1-5"),  # a cron is kept as given
        ("@monthly", "@monthly"),
    ],
)
def test_schedule_phrases(phrase: str, cron: str) -> None:
    assert schedule_for(phrase) == cron
    assert monitor("q").check_every(phrase).request()["schedule"] == cron


@pytest.mark.parametrize("phrase", ["7 hours", "45 minutes", "90 minutes", "2 days", "3 weeks"])
def test_phrases_cron_cannot_express_are_refused(phrase: str) -> None:
    with pytest.raises(ValueError, match="use a"):
        schedule_for(phrase)


def test_each_step_returns_a_new_monitor() -> None:
    base = monitor(QUERY)
    conditioned = base.when(CONDITION)
    assert isinstance(conditioned, Monitor)
    assert base.request() == {"search_query": QUERY}
    assert conditioned.request() == {"search_query": QUERY, "condition_description": CONDITION}


def test_the_request_carries_every_field() -> None:
    built = (
        monitor(QUERY)
        .when(CONDITION)
        .check_every("6 hours", timezone="Europe/Berlin")
        .reading("https://www.apple.com/newsroom/")
        .notify(webhook="https://hooks.example.com/t", email="me@example.com")
        .notify(apprise="json://hooks.example.com/a", behavior="track_state")
        .named("iPhone release")
        .with_context({"k": 1})
        .using(model="fake-model", search_provider="searxng")
        .run_immediately()
    )
    assert built.request() == {
        "search_query": QUERY,
        "condition_description": CONDITION,
        "schedule": "0 */6 * * *",
        "timezone": "Europe/Berlin",
        "urls": ["https://www.apple.com/newsroom/"],
        "notifications": [
            {"type": "webhook", "url": "https://hooks.example.com/t"},
            {"type": "email", "address": "me@example.com"},
            {"type": "apprise", "url": "json://hooks.example.com/a"},
        ],
        "notify_behavior": "track_state",
        "name": "iPhone release",
        "context": {"k": 1},
        "config": {"model": "fake-model", "search_provider": "searxng"},
        "run_immediately": True,
    }


def test_create_makes_the_task_described(client: Torale, api: Api) -> None:
    hook = f"{api.url}/hook"  # http on 127.0.0.1: allowed by this server's settings
    task = (
        monitor(QUERY)
        .when(CONDITION)
        .check_every("6 hours")
        .notify(webhook=hook, email="me@example.com")
        .named("iPhone release")
        .create(client)
    )
    assert (task.name, task.search_query, task.condition_description) == (
        "iPhone release",
        QUERY,
        CONDITION,
    )
    assert (task.schedule, task.timezone, task.notify_behavior) == ("0 */6 * * *", "UTC", "once")
    assert [c.model_dump(include={"type", "url", "address"}) for c in task.notifications] == [
        {"type": "webhook", "url": hook},
        {"type": "email", "address": "me@example.com"},
    ]
    assert client.tasks.get(task.id).schedule == "0 */6 * * *"


def test_create_with_a_cron_a_zone_and_run_immediately(client: Torale) -> None:
    before = datetime.now(UTC)
    task = (
        monitor("Rust 2.0 release")
        .check_every("30 9 * * 1-5", timezone="America/New_York")
        .notify(behavior="always")
        .with_context({"source": "builder"})
        .run_immediately()
        .create(client)
    )
    assert (task.schedule, task.timezone) == ("30 9 * * 1-5", "America/New_York")
    assert task.notify_behavior == "always"
    assert task.condition_description == "Rust 2.0 release"  # defaults to the query
    assert task.context == {"source": "builder"}
    assert task.next_run is not None
    assert (
        before - timedelta(seconds=5) <= task.next_run <= datetime.now(UTC) + timedelta(seconds=5)
    )


def test_create_without_a_client_reads_the_environment(
    api: Api, user_key: str, client: Torale, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORALE_API_URL", api.url)
    monkeypatch.setenv("TORALE_API_KEY", user_key)
    task = monitor(QUERY).check_every("daily").named("from env").create()
    assert [t.id for t in client.tasks.list()] == [task.id]
    assert task.schedule == "0 9 * * *"


def test_a_schedule_the_server_refuses_is_a_validation_error(client: Torale) -> None:
    with pytest.raises(ValidationError) as refused:
        monitor(QUERY).check_every("minute").create(client)  # more often than 5 minutes
    assert [e["loc"] for e in refused.value.errors] == [["body", "schedule"]]
    assert list(client.tasks.list()) == []


async def test_acreate(api: Api, user_key: str) -> None:
    async with ToraleAsync(api_key=user_key, api_url=api.url) as client:
        task = await monitor(QUERY).when(CONDITION).check_every("2 hours").acreate(client)
        assert (task.schedule, task.condition_description) == ("0 */2 * * *", CONDITION)
        assert (await client.tasks.get(task.id)).id == task.id
