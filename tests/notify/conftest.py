"""Notifications end to end: real runs (the engine's local fakes) queue deliveries that go to a
real webhook receiver, a real SMTP server and a real Apprise endpoint, all on 127.0.0.1.

Settings allow plain http and exactly 127.0.0.1 as a private network, so the local receivers are
reachable while every other private address (127.0.0.2 included) is refused as in production.
Retry delays and the dispatcher's poll are tiny so that retries take milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi import FastAPI
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from tests.conftest import ApiUser
from tests.engine.conftest import (  # noqa: F401 (fixtures used by this package's tests)
    MET,
    NOT_MET,
    _fresh_fakes,
    fake_model,
    fake_search,
    fake_web,
    new_task,
    page,
    run_now,
)
from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver, verdict_rules
from torale.db.models import Delivery, DeliveryAttempt

T = TypeVar("T")
ANNOUNCED = "Apple announced the iPhone 18 release for September 9."
DELAYS = "0.05,0.05,0.05"  # three retries: four attempts in all


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    """Parametrise this (indirectly) to change a setting for one test."""
    return {}


@pytest.fixture
def settings_overrides(
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
    extra_settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "openai_base_url": fake_model.url + "/v1",
        "search_provider": "searxng",
        "searxng_url": fake_search.url,
        "allowed_networks": "127.0.0.1/32",
        "allow_http_webhooks": True,
        "provider_retries": 0,
        "fetch_timeout_seconds": 2,
        "model_timeout_seconds": 5,
        "run_timeout_seconds": 15,
        "delivery_retry_delays": DELAYS,
        "scheduler_poll_seconds": 0.05,
        "webhook_timeout_seconds": 2,
        **extra_settings,
    }


@pytest.fixture
def newsroom(
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
) -> str:
    """A page the search engine finds and the model judges met: every run notifies."""
    fake_web.set_page("/newsroom", page(ANNOUNCED))
    url = fake_web.url + "/newsroom"
    fake_search.set_results(None, [(url, "Apple Newsroom", "iPhone news")])
    fake_model.script = verdict_rules([(ANNOUNCED, MET)], default=NOT_MET)
    return url


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver on 127.0.0.1; give it the user's secret to make it verify."""
    with WebhookReceiver() as fake:
        yield fake


# --- webhook secrets ------------------------------------------------------------------------


def readable_by_standardwebhooks(secret: str) -> bool:
    try:
        Webhook(secret)
    except (binascii.Error, ValueError):
        return False
    return True


def is_standard_secret(secret: str) -> bool:
    """`whsec_` + standard base64 (Standard Webhooks), of at least 24 random bytes."""
    if not secret.startswith("whsec_"):
        return False
    try:
        raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= 24


async def webhook_secret(client: httpx.AsyncClient, user: ApiUser) -> str:
    """The user's webhook secret, rotated until the `standardwebhooks` package can use it.

    Only needed because of a product bug (see test_routes.py::test_secrets_follow_the_standard
    _webhooks_format): about one secret in four cannot be decoded and every delivery signed
    with it fails. Tests of other behaviour use a usable one so that they test what they name.
    """
    response = await client.get("/api/v1/webhooks/config", headers=user.headers)
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    for _ in range(50):
        if readable_by_standardwebhooks(secret):
            return secret
        rotated = await client.post("/api/v1/webhooks/config/rotate-secret", headers=user.headers)
        secret = rotated.json()["secret"]
    raise AssertionError("no usable webhook secret in 50 rotations")


# --- runs and deliveries ------------------------------------------------------------------


async def notifying_task(
    client: httpx.AsyncClient, user: ApiUser, notifications: list[dict[str, Any]], **body: Any
) -> dict[str, Any]:
    """A task that notifies on every met run."""
    body.setdefault("notify_behavior", "always")
    return await new_task(client, user, notifications=notifications, **body)


async def run_notifying(
    app: FastAPI, client: httpx.AsyncClient, user: ApiUser, task_id: str
) -> list[Delivery]:
    """Run the task now; the deliveries it queued, in channel order."""
    execution = await run_now(client, user, task_id)
    assert execution["status"] == "success", execution
    assert execution["notification"], execution
    return await deliveries_of(app, execution_id=execution["id"])


async def deliveries_of(
    app: FastAPI, *, execution_id: str | None = None, task_id: str | None = None
) -> list[Delivery]:
    statement = select(Delivery).order_by(Delivery.created_at, Delivery.channel_index)
    if execution_id is not None:
        statement = statement.where(Delivery.execution_id == uuid.UUID(execution_id))
    if task_id is not None:
        statement = statement.where(Delivery.task_id == uuid.UUID(task_id))
    async with app.state.torale.sessions() as session:
        return list(await session.scalars(statement))


async def attempts_of(app: FastAPI, delivery_id: uuid.UUID) -> list[DeliveryAttempt]:
    async with app.state.torale.sessions() as session:
        rows = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.attempted_at)
        )
        return list(rows)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = 10.0,
    what: str = "condition",
) -> T:
    """Poll `probe` until `done(result)`; the result. AssertionError with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s; last: {result!r}")
        await asyncio.sleep(0.02)


async def settled(
    app: FastAPI, ids: list[uuid.UUID], *, timeout: float = 10.0
) -> dict[uuid.UUID, Delivery]:
    """Wait until every delivery in `ids` is delivered or failed; them by id."""

    async def probe() -> dict[uuid.UUID, Delivery]:
        return {d.id: d for d in await deliveries_of(app) if d.id in ids}

    return await eventually(
        probe,
        lambda found: (
            len(found) == len(ids)
            and all(d.status in ("delivered", "failed") for d in found.values())
        ),
        timeout=timeout,
        what=f"deliveries {ids} settled",
    )


async def attempts_api(client: httpx.AsyncClient, user: ApiUser, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/webhooks/deliveries", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- a real SMTP server -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    def part(self, content_type: str) -> str:
        body = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        assert body is not None, self.message
        assert body.get_content_type() == content_type, self.message
        content: str = body.get_content()
        return content


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a free port, keeping every message; with `username`, AUTH
    (LOGIN/PLAIN, over plain text for the test) is required and checked."""

    username: str | None = None
    password: str | None = None
    mails: list[ReceivedMail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0
    controller: Controller | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == (self.username, self.password))

    def start(self) -> SmtpServer:
        self.port = free_port()
        options: dict[str, Any] = {}
        if self.username is not None:
            options = {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while len(self.mails) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.mails)} of {count} emails in {timeout} s")
            await asyncio.sleep(0.02)
        return list(self.mails)
