"""A server newer than this SDK: what the real server answered, with what a later version may add.

`record_answers` asks the real server (a task with a webhook and an email channel, run once, its
webhook delivered) and keeps the JSON it answered; `newer` adds to it a task state, a notify
behaviour, a channel type, an executor type, a search provider, execution statuses, a role, a
delivery status and unknown fields at every level. `NewerServer` answers the SDK's reads with it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes import WebhookReceiver
from tests.fakes.server import LocalServer

Json = dict[str, Any]

NEW_STATE = "archived"
NEW_BEHAVIOR = "digest"
NEW_CHANNEL = {"type": "sms", "number": "+15550100", "enabled": True}
NEW_STATUS = "skipped"


@dataclass(frozen=True)
class Answers:
    """The JSON bodies one server answered to the SDK's reads."""

    task: Json
    executions: Json  # a page
    me: Json
    webhook_config: Json
    deliveries: Json  # a page
    preview: Json


def record_answers(api_url: str, key: str, receiver: WebhookReceiver) -> Answers:
    """A task with every kind of field filled in, run once and notified, as the server shows it."""
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:

        def ok(response: httpx.Response) -> Json:
            assert response.is_success, response.text
            body: Json = response.json()
            return body

        receiver.secret = ok(http.get("/api/v1/webhooks/config"))["secret"]
        task = ok(
            http.post(
                "/api/v1/tasks",
                json={
                    "search_query": "When is the next iPhone release?",
                    "notify_behavior": "always",
                    "config": {"search_provider": "searxng"},
                    "context": {"team": "mobile"},
                    "notifications": [
                        {"type": "webhook", "url": receiver.url_for("/hook")},
                        {"type": "email", "address": "me@example.com"},
                    ],
                },
            )
        )
        run = ok(http.post(f"/api/v1/tasks/{task['id']}/execute", params={"wait": True}))
        assert run["status"] == "success", run
        deadline = time.monotonic() + 15
        while True:
            deliveries = ok(http.get("/api/v1/webhooks/deliveries", params={"task_id": task["id"]}))
            if deliveries["items"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert deliveries["items"], "the webhook was not delivered"
        return Answers(
            task=ok(http.get(f"/api/v1/tasks/{task['id']}")),
            executions=ok(http.get(f"/api/v1/tasks/{task['id']}/executions")),
            me=ok(http.get("/auth/me")),
            webhook_config=ok(http.get("/api/v1/webhooks/config")),
            deliveries=deliveries,
            preview=ok(
                http.post("/api/v1/tasks/preview", json={"search_query": "Rust 2.0 release"})
            ),
        )


def _newer_execution(execution: Json) -> Json:
    execution = copy.deepcopy(execution)
    execution.update(status=NEW_STATUS, trigger="webhook", cost_usd=0.002)
    execution["usage"]["cache_hits"] = 3
    execution["grounding_sources"][0]["snippet"] = "Apple announced…"
    execution["result"]["evidence"] = [{"quote": "September 9"}]
    return execution


def _newer_page(page: Json, items: list[Json]) -> Json:
    return {**page, "items": items, "next_cursor": "c2"}


def newer(answers: Answers) -> Answers:
    """The same answers from a later server version."""
    task = copy.deepcopy(answers.task)
    task.update(
        state=NEW_STATE,
        notify_behavior=NEW_BEHAVIOR,
        executor_type="change_detection",
        labels=["phones"],
        is_active=False,
    )
    task["notifications"].append(dict(NEW_CHANNEL))
    task["notifications"][0]["retry_policy"] = "aggressive"
    task["config"].update(search_provider="kagi", language="de")
    task["last_execution"] = _newer_execution(task["last_execution"])
    executions = [_newer_execution(e) for e in answers.executions["items"]]
    deliveries = [
        {**d, "channel_type": "sms", "delivery_status": "queued", "region": "eu"}
        for d in answers.deliveries["items"]
    ]
    preview = copy.deepcopy(answers.preview)
    preview.update(model_used="fake-model")
    preview["usage"]["cache_hits"] = 3
    preview["grounding_sources"][0]["snippet"] = "Apple announced…"
    return Answers(
        task=task,
        executions=_newer_page(answers.executions, executions),
        me={**answers.me, "role": "owner", "plan": "pro"},
        webhook_config={**answers.webhook_config, "events": ["task.condition_met"]},
        deliveries=_newer_page(answers.deliveries, deliveries),
        preview=preview,
    )


class NewerServer:
    """Answers the SDK's reads with `answers`, whatever the id or page asked for."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        listing = _newer_page({"total": 1, "page": 1, "limit": 100}, [answers.task])

        def answer(body: Json) -> Any:
            async def endpoint(_: Request) -> JSONResponse:
                return JSONResponse(body)

            return endpoint

        run = answers.task["last_execution"]
        routes = [
            Route("/api/v1/tasks", answer(listing)),
            Route("/api/v1/tasks/preview", answer(answers.preview), methods=["POST"]),
            Route("/api/v1/tasks/{id}", answer(answers.task), methods=["GET", "PATCH"]),
            Route("/api/v1/tasks/{id}/execute", answer(run), methods=["POST"]),
            Route("/api/v1/tasks/{id}/executions", answer(answers.executions)),
            Route("/api/v1/tasks/{id}/notifications", answer(answers.executions)),
            Route("/auth/me", answer(answers.me)),
            Route("/api/v1/webhooks/config", answer(answers.webhook_config)),
            Route("/api/v1/webhooks/deliveries", answer(answers.deliveries)),
        ]  # fmt: skip
        self.server = LocalServer(Starlette(routes=routes))

    @property
    def url(self) -> str:
        return self.server.url
