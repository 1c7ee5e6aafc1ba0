"""Apprise deliveries: any service Apprise supports (Slack, Telegram, Discord, ntfy, json://…).

Apprise makes its own HTTP requests, outside the guarded client, so the host of the URL is
resolved and checked against the outbound policy first.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from torale.net import OutboundPolicy, UnsafeURLError, ensure_host_allowed
from torale.notify.sending import Outgoing, SendResult, message_text

# Apprise schemes that speak plain http (their s-suffixed forms use https).
PLAIN_HTTP_SCHEMES = frozenset({"json", "xml", "form"})


class AppriseSender:
    def __init__(self, policy: OutboundPolicy, *, timeout: float) -> None:
        self.policy = policy
        self.timeout = timeout

    async def send(self, outgoing: Outgoing) -> SendResult:
        import apprise

        url = outgoing.channel["url"]
        if url.split("://", 1)[0].lower() in PLAIN_HTTP_SCHEMES and not self.policy.allow_http:
            return SendResult(
                False,
                error="plain http is not allowed on this server (use jsons://)",
                permanent=True,
            )
        host = urlsplit(url).hostname
        if host:
            try:
                await ensure_host_allowed(host, self.policy)
            except UnsafeURLError as exc:
                return SendResult(
                    False, error=f"refused by the outbound policy: {exc}", permanent=True
                )
        # Redirects off: a redirect would be followed to a host nobody checked.
        notifier = apprise.Apprise(asset=apprise.AppriseAsset(http_redirects=False))
        if not notifier.add(url):
            return SendResult(False, error="Apprise cannot use this URL", permanent=True)
        title, body = message_text(outgoing.payload)
        try:
            ok = await asyncio.wait_for(notifier.async_notify(body=body, title=title), self.timeout)
        except TimeoutError:
            return SendResult(False, error="the service did not answer in time")
        if not ok:
            return SendResult(False, error="the service did not accept the notification")
        return SendResult(True)
