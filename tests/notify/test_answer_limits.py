"""Receivers that answer slowly or endlessly: webhook and Apprise sends end within their
deadline and read no more of the answer than a few KB.

"Bytes read are capped" is measured on the receiver's side: with small send buffers there, a
sender that stops reading and closes makes the receiver stop too, while one that reads the
whole answer lets it send megabytes within the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes import StallingServer
from tests.fixtures.outgoing import apprise_outgoing
from tests.fixtures.users import ApiUser
from torale.net import OutboundPolicy
from torale.notify.apprise_sender import AppriseSender
from torale.notify.webhook import WebhookSender, new_secret

LOCAL = OutboundPolicy(allow_http=True, allow_private=True)
DEADLINE = 1.0
# What a sender may cost the receiver: a few KB read, plus what socket buffers hold.
CAP = 512 * 1024
EVENT = {"data": {"message": "hello"}}


@pytest.fixture
def endless() -> Iterator[StallingServer]:
    with StallingServer("endless") as server:
        yield server


@pytest.fixture
def trickle() -> Iterator[StallingServer]:
    with StallingServer("trickle") as server:
        yield server


async def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    # Past this the send has no deadline at all (the code before the fix never returned).
    result = await asyncio.wait_for(call, DEADLINE + 10)
    return result, time.monotonic() - started


async def test_webhook_reads_no_endless_answer(endless: StallingServer) -> None:
    sender = WebhookSender(LOCAL, timeout=DEADLINE)
    try:
        result, _ = await timed(
            sender.post(endless.url_for("/h"), "msg_1", EVENT, secret=new_secret(), headers={})
        )
    finally:
        await sender.close()
    assert (result.ok, result.status_code) == (True, 200)
    await asyncio.sleep(0.3)  # whatever the receiver could still push
    assert endless.bytes_sent < CAP, endless.bytes_sent


async def test_webhook_to_a_trickling_receiver_ends_at_its_deadline(
    trickle: StallingServer,
) -> None:
    sender = WebhookSender(LOCAL, timeout=DEADLINE)
    try:
        result, took = await timed(
            sender.post(trickle.url_for("/h"), "msg_1", EVENT, secret=new_secret(), headers={})
        )
    finally:
        await sender.close()
    assert result.ok is False
    assert result.error == "the receiver did not answer in time"
    assert took < DEADLINE + 2
    assert trickle.wait_closed(2)


async def test_webhook_test_route_reads_no_endless_answer(
    client: httpx.AsyncClient, alice: ApiUser, endless: StallingServer
) -> None:
    """The reported case: POST /webhooks/test to a receiver streaming without end."""
    response = await asyncio.wait_for(
        client.post(
            "/api/v1/webhooks/test", json={"url": endless.url_for("/t")}, headers=alice.headers
        ),
        30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["delivered"] is True
    await asyncio.sleep(0.3)
    assert endless.bytes_sent < CAP, endless.bytes_sent


async def test_apprise_reads_no_endless_answer(endless: StallingServer) -> None:
    sender = AppriseSender(LOCAL, timeout=DEADLINE)
    result, _ = await timed(sender.send(apprise_outgoing(f"json://127.0.0.1:{endless.port}/n")))
    assert result.ok is True, result
    assert endless.wait_closed(2)
    assert endless.bytes_sent < CAP, endless.bytes_sent


async def test_apprise_to_a_trickling_receiver_ends_at_its_deadline(
    trickle: StallingServer,
) -> None:
    sender = AppriseSender(LOCAL, timeout=DEADLINE)
    result, took = await timed(sender.send(apprise_outgoing(f"json://127.0.0.1:{trickle.port}/n")))
    assert result.ok is False
    assert result.error == "the service did not answer in time"
    assert took < DEADLINE + 2
    # Apprise's own thread is not left reading either: its connection is ended.
    assert trickle.wait_closed(2), "Apprise still holds the connection past the deadline"


def test_connection_headers_saved_before_they_were_refused_are_not_sent() -> None:
    """A channel written before the save-time rule (or straight into the database) cannot make
    a request with both a length and chunked framing, or one that asks to switch protocols."""
    from torale.notify.webhook import signed_headers

    extra = {"Transfer-Encoding": "chunked", "Connection": "upgrade", "X-Token": "t"}
    sent = {k.lower() for k in signed_headers(new_secret(), "msg_1", b"{}", extra=extra)}
    assert "x-token" in sent
    assert not {"transfer-encoding", "connection"} & sent
