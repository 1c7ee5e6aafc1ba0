"""Webhook deliveries: a POST of the event, signed per Standard Webhooks.

`webhook-id` is the delivery id (the same on every retry, so receivers can deduplicate),
`webhook-timestamp` the time of the attempt, `webhook-signature` an HMAC of id, timestamp and
the exact body bytes with the user's secret (`standardwebhooks`). A channel's own headers are
sent too but can never replace these. Requests go through the outbound guard; redirects are
not followed. 2xx is success, 410 Gone turns the channel off, anything else is retried.

Only the receiver's status matters: its body is never read (the connection is closed after the
status line and headers), and the whole request, from connecting to the last header, has one
deadline (TORALE_WEBHOOK_TIMEOUT_SECONDS), so a receiver that answers slowly or endlessly holds
neither memory nor the caller.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from torale import __version__
from torale.net import OutboundPolicy, UnsafeURLError, guarded_client
from torale.notify.channels import RESERVED_HEADERS
from torale.notify.sending import Outgoing, SendResult

USER_AGENT = f"Torale-Webhooks/{__version__}"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and standard base64 of 32 random bytes (what every
    Standard Webhooks library, in any language, decodes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(
    secret: str, message_id: str, body: bytes, *, extra: dict[str, str] | None = None
) -> dict[str, str]:
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, now, body.decode())
    # Torale's own headers last: a channel cannot replace them (whatever their case); nor send
    # connection headers (a channel saved before they were refused when saving).
    headers = {k: v for k, v in (extra or {}).items() if k.lower() not in RESERVED_HEADERS}
    headers.update(
        {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
    )
    return headers


class WebhookSender:
    def __init__(self, policy: OutboundPolicy, *, timeout: float) -> None:
        self.timeout = timeout
        self.client = guarded_client(policy, timeout=timeout, max_redirects=0)

    async def post(
        self,
        url: str,
        message_id: str,
        payload: dict[str, Any],
        *,
        secret: str,
        headers: dict[str, str],
    ) -> SendResult:
        body = body_of(payload)
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.stream(
                    "POST",
                    url,
                    content=body,
                    headers=signed_headers(secret, message_id, body, extra=headers),
                    follow_redirects=False,
                ) as response:
                    status = response.status_code  # the body is not read: closed unread
        except UnsafeURLError as exc:
            return SendResult(False, error=exc.refusal, permanent=True)
        except httpx.InvalidURL:
            return SendResult(False, error="not a URL an HTTP client can request", permanent=True)
        except (httpx.TimeoutException, TimeoutError):
            return SendResult(False, error="the receiver did not answer in time")
        except httpx.HTTPError as exc:
            return SendResult(False, error=f"could not reach the receiver ({type(exc).__name__})")
        if 200 <= status < 300:
            return SendResult(True, status_code=status)
        if status == 410:
            return SendResult(
                False,
                status_code=status,
                error="the receiver answered 410 Gone: the channel was turned off",
                permanent=True,
                disable_channel=True,
            )
        return SendResult(False, status_code=status, error=f"the receiver answered HTTP {status}")

    async def send(self, outgoing: Outgoing, *, secret: str) -> SendResult:
        channel = outgoing.channel
        return await self.post(
            channel["url"],
            str(outgoing.id),
            outgoing.payload,
            secret=secret,
            headers=dict(channel.get("headers") or {}),
        )

    async def close(self) -> None:
        await self.client.aclose()
