"""An SDK (and CLI) older than its server: new states, notify behaviours, channel types, enum
values and fields read without an error, and stay readable (see newer_server.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.sdk.newer_server import NEW_BEHAVIOR, NEW_CHANNEL, NEW_STATE, NEW_STATUS, NewerServer
from torale.cli import app
from torale.sdk import (
    EmailChannel,
    Execution,
    Page,
    Task,
    Torale,
    ToraleAsync,
    UnknownChannel,
    WebhookChannel,
)

TASK_ID = str(uuid.UUID(int=1))


@pytest.fixture
def client(newer_server: NewerServer) -> Iterator[Torale]:
    with Torale(api_key="sk_" + "x" * 43, api_url=newer_server.url) as c:
        yield c


def test_a_task_with_a_new_state_behavior_channel_and_fields(client: Torale) -> None:
    task = client.tasks.get(TASK_ID)
    assert (task.state, task.notify_behavior) == (NEW_STATE, NEW_BEHAVIOR)
    assert task.executor_type == "change_detection"
    assert task.is_active is False

    webhook, email, sms = task.notifications
    assert isinstance(webhook, WebhookChannel)
    assert isinstance(email, EmailChannel)
    assert webhook.model_extra == {"retry_policy": "aggressive"}
    assert isinstance(sms, UnknownChannel)
    assert sms.type == "sms"
    assert sms.model_extra == {"number": NEW_CHANNEL["number"], "enabled": True}

    assert task.model_extra == {"labels": ["phones"]}
    assert getattr(task, "labels") == ["phones"]  # noqa: B009 (unknown to type checkers)
    assert task.config.search_provider == "kagi"
    assert task.config.model_extra == {"language": "de"}

    run = task.last_execution
    assert run is not None
    assert (run.status, run.trigger) == (NEW_STATUS, "webhook")
    assert run.model_extra == {"cost_usd": 0.002}
    assert run.usage.model_extra == {"cache_hits": 3}
    assert run.grounding_sources[0].model_extra == {"snippet": "Apple announced…"}
    assert run.result is not None
    assert run.result.model_extra == {"evidence": [{"quote": "September 9"}]}


def test_nothing_the_newer_server_sent_is_lost(client: Torale, newer_server: NewerServer) -> None:
    task = client.tasks.get(TASK_ID)
    assert task.model_dump(mode="json", exclude_unset=True) == newer_server.answers.task
    assert Task.model_validate(task.model_dump()) == task


def test_lists_executions_and_the_rest(client: Torale, newer_server: NewerServer) -> None:
    page = client.tasks.list_page()
    assert isinstance(page, Page)
    assert page.model_extra == {"next_cursor": "c2"}
    assert [t.state for t in client.tasks.list()] == [NEW_STATE]

    runs = list(client.tasks.executions(TASK_ID))
    assert runs
    assert all(isinstance(r, Execution) and r.status == NEW_STATUS for r in runs)
    assert client.tasks.execute(TASK_ID).trigger == "webhook"
    assert next(client.tasks.notifications(TASK_ID)).model_extra == {"cost_usd": 0.002}

    preview = client.tasks.preview("Rust 2.0 release")
    assert preview.model_extra == {"model_used": "fake-model"}
    assert preview.usage.model_extra == {"cache_hits": 3}

    me = client.auth.me()
    assert (me.role, me.model_extra) == ("owner", {"plan": "pro"})
    config = client.webhooks.get_config()
    assert config.model_extra == {"events": ["task.condition_met"]}
    assert "whsec_" not in repr(config)  # the secret stays out of reprs
    deliveries = list(client.webhooks.deliveries())
    assert deliveries
    for delivery in deliveries:
        assert (delivery.channel_type, delivery.delivery_status) == ("sms", "queued")
        assert delivery.model_extra == {"region": "eu"}


async def test_the_async_client_reads_it_too(newer_server: NewerServer) -> None:
    async with ToraleAsync(api_key="sk_" + "x" * 43, api_url=newer_server.url) as client:
        task = await client.tasks.get(TASK_ID)
        assert (task.state, task.notifications[-1].type) == (NEW_STATE, "sms")
        assert [t.notify_behavior async for t in client.tasks.list()] == [NEW_BEHAVIOR]


def run_cli(newer_server: NewerServer, *args: str) -> Any:
    env = {"TORALE_API_URL": newer_server.url, "TORALE_API_KEY": "sk_" + "x" * 43}
    result = CliRunner().invoke(app, list(args), env={**env, "COLUMNS": "200"})
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.stdout


def test_the_cli_shows_what_it_does_not_know(newer_server: NewerServer) -> None:
    shown = run_cli(newer_server, "task", "get", TASK_ID)
    assert f"state          {NEW_STATE}" in shown
    assert f"notify         {NEW_BEHAVIOR}" in shown
    assert f"last run       {NEW_STATUS}" in shown
    assert NEW_STATE in run_cli(newer_server, "task", "list")
    assert NEW_STATUS in run_cli(newer_server, "task", "logs", TASK_ID)
    as_json = json.loads(run_cli(newer_server, "task", "get", TASK_ID, "--json"))
    assert as_json == newer_server.answers.task  # unknown fields included
    assert "owner" in run_cli(newer_server, "auth", "status")
