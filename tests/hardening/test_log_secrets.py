"""No channel secret reaches the log, at any level: not through Apprise (which logs URLs it
cannot read, and tokens it finds invalid), not through urllib3/requests (request paths, where
Slack and Discord keep their tokens), not through httpx (full request URLs), and not through
Torale's own lines that quote a URL.

Each test runs at every level, with the log set up as `torale serve` sets it up (`server_log`)
and again through pytest's own capture (another handler, no Torale formatter)."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.fakes import WebhookReceiver
from tests.fixtures.logs import ServerLog
from tests.fixtures.outgoing import apprise_outgoing
from tests.fixtures.users import ApiUser
from torale.net import OutboundPolicy
from torale.notify.apprise_sender import AppriseSender
from torale.notify.webhook import WebhookSender, new_secret

TOKEN = "tok3nSECRETb0dy9x8"
LEVELS = ["debug", "info", "warning", "error"]
LOCAL = OutboundPolicy(allow_http=True, allow_private=True)


async def leak_everything(
    client: httpx.AsyncClient, user: ApiUser, receiver: WebhookReceiver
) -> None:
    """Everything that used to put TOKEN in the log."""
    # Apprise URLs it cannot use, saved as channels (a typo in a Slack URL; an invalid token).
    for url in (f"slack:/T1234567/B1234567/{TOKEN}", f"slack://{TOKEN}", f"tgram://{TOKEN}/"):
        response = await client.post(
            "/api/v1/tasks",
            json={"search_query": "q", "notifications": [{"type": "apprise", "url": url}]},
            headers=user.headers,
        )
        assert response.status_code == 422, response.text
    # An Apprise delivery whose path is its token (urllib3 logs request lines at DEBUG).
    sent = await AppriseSender(LOCAL, timeout=5).send(
        apprise_outgoing(f"json://127.0.0.1:{receiver.port}/services/{TOKEN}")
    )
    assert sent.ok, sent
    # A webhook whose path is its token (httpx logs request URLs at INFO).
    webhooks = WebhookSender(LOCAL, timeout=5)
    try:
        hook = await webhooks.post(
            receiver.url_for(f"/hooks/{TOKEN}"), "msg_1", {}, secret=new_secret(), headers={}
        )
    finally:
        await webhooks.close()
    assert hook.ok, hook
    # Torale's own lines quoting URLs (a page that could not be read, an error's text).
    logging.getLogger("torale.engine").error(
        "could not read %s: %s",
        f"https://hooks.slack.com/services/T1/B1/{TOKEN}?key={TOKEN}",
        f"failed on slack://T1/B1/{TOKEN} and https://user:{TOKEN}@example.com",
    )


@pytest.mark.parametrize("log_level", LEVELS)
async def test_no_token_in_the_server_log(
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    server_log: ServerLog,
    log_level: str,
) -> None:
    await leak_everything(client, alice, receiver)
    assert len(receiver.requests) == 2
    assert "torale.engine" in server_log.text  # the log works: Torale's own line is there
    assert TOKEN not in server_log.text, server_log.text
    assert "https://hooks.slack.com/…" in server_log.text  # the host stays, for the operator


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR])
async def test_no_token_from_libraries_in_any_captured_log(
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
    level: int,
) -> None:
    with caplog.at_level(level):
        await leak_everything(client, alice, receiver)
    # Not Torale's lines (this capture has no Torale formatter), nor the receiving fake's own
    # access log (it stands for the service at the other end).
    library_lines = [r for r in caplog.records if not r.name.startswith(("torale", "uvicorn"))]
    assert [r.getMessage() for r in library_lines if TOKEN in r.getMessage()] == []
    assert not [r for r in library_lines if r.name.split(".")[0] in ("apprise", "urllib3")]
