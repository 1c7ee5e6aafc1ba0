"""Apprise deliveries: the services of `apprise_guard.APPRISE_SCHEMES` (Slack, Telegram,
Discord, ntfy, json://…).

Apprise makes its own HTTP requests, outside the guarded httpx client: they are sent inside
`apprise_guard.guarded`, which checks every connection against the outbound policy, reads no
answer further than a few KB, and ends the whole send at TORALE_WEBHOOK_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio

from torale.net import REFUSED, OutboundPolicy
from torale.notify.apprise_guard import apprise_url_problem, guarded
from torale.notify.sending import Outgoing, SendResult, message_text


class AppriseSender:
    def __init__(self, policy: OutboundPolicy, *, timeout: float) -> None:
        self.policy = policy
        self.timeout = timeout

    async def send(self, outgoing: Outgoing) -> SendResult:
        import apprise

        url = outgoing.channel["url"]
        # Checked again: the channel may have been saved before the policy was narrowed.
        problem = apprise_url_problem(url, self.policy)
        if problem:
            return SendResult(False, error=f"{REFUSED}: {problem}", permanent=True)
        # Redirects off: nothing to gain from them (every connection is checked anyway).
        notifier = apprise.Apprise(asset=apprise.AppriseAsset(http_redirects=False))
        if not notifier.add(url):
            return SendResult(False, error="Apprise cannot use this URL", permanent=True)
        title, body = message_text(outgoing.payload)
        with guarded(self.policy, within=self.timeout) as guard:
            try:
                ok = await asyncio.wait_for(
                    notifier.async_notify(body=body, title=title), self.timeout
                )
            except TimeoutError:
                ok = None
            finally:
                guard.expire()  # whatever Apprise's threads still hold open ends now
        if guard.refused:
            return SendResult(False, error=REFUSED, permanent=True)
        if ok is None or (guard.remaining() <= 0 and not ok):
            return SendResult(False, error="the service did not answer in time")
        if not ok:
            return SendResult(False, error="the service did not accept the notification")
        return SendResult(True)
