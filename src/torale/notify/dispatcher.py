"""The dispatcher: sends what runs queued in the outbox, retries, and records every attempt.

Deliveries are claimed from the database like scheduled runs are: due rows (`pending`, their
`next_attempt_at` come) are moved to `sending` with a lease by a conditional update (and FOR
UPDATE SKIP LOCKED on PostgreSQL), so any number of processes share the work and none sends a
row another has. A process that dies mid-send leaves a `sending` row whose lease runs out; it
goes back to `pending` and is sent again with the same id (`webhook-id`), which is the one case
where a receiver can see a message twice, and can tell. Failures retry after
TORALE_DELIVERY_RETRY_DELAYS (with jitter); after the last delay the delivery is `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from torale.config import Settings
from torale.db import locks
from torale.db.engine import session_scope
from torale.db.models import Delivery, DeliveryAttempt, Task, User, WebhookConfig
from torale.logs import silence_secret_bearing_loggers
from torale.net import OutboundPolicy
from torale.notify.apprise_sender import AppriseSender
from torale.notify.email import EmailSender
from torale.notify.sending import Outgoing, SendResult
from torale.notify.service import webhook_config
from torale.notify.webhook import WebhookSender
from torale.statuses import DeliveryStatus

logger = logging.getLogger("torale.notify")
INTERRUPTED = "interrupted: the sending process stopped before it finished"


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        write_lock: asyncio.Lock | None,
        *,
        concurrency: int = 8,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.write_lock = write_lock
        self.concurrency = concurrency
        self.poll_seconds = settings.scheduler_poll_seconds
        silence_secret_bearing_loggers()  # their lines carry channel URLs and tokens
        policy = OutboundPolicy.from_settings(settings, purpose="notifications")
        timeout = settings.webhook_timeout_seconds
        self.webhooks = WebhookSender(policy, timeout=timeout)
        self.email = EmailSender(
            settings.smtp_url.get_secret_value() if settings.smtp_url else None,
            sender=settings.email_from,
            timeout=timeout * 3,
        )
        self.apprise = AppriseSender(policy, timeout=timeout)
        self.lease = timedelta(seconds=timeout * 3 + 30)
        self._sending: set[asyncio.Task[SendResult]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name="torale dispatcher")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for sending in list(self._sending):
            sending.cancel()
        for sending in list(self._sending):
            with contextlib.suppress(asyncio.CancelledError):
                await sending
        await self.webhooks.close()

    def wake(self) -> None:
        self._wake.set()

    # --- claiming --------------------------------------------------------------------------

    async def claim(self, *, limit: int, now: datetime) -> list[Outgoing]:
        if limit <= 0:
            return []
        claimed = []
        async with session_scope(self.sessions, self.write_lock) as session:
            # Sends cut off by a dying process go back in line, with their attempt recorded.
            stale = await session.execute(
                select(Delivery.id, Delivery.user_id, Delivery.task_id).where(
                    Delivery.status == DeliveryStatus.SENDING, Delivery.lease_expires_at < now
                )
            )
            for delivery_id, user_id, task_id in stale.all():
                moved = await session.execute(
                    update(Delivery)
                    .where(
                        Delivery.id == delivery_id,
                        Delivery.status == DeliveryStatus.SENDING,
                        Delivery.lease_expires_at < now,
                    )
                    .values(
                        status=DeliveryStatus.PENDING, next_attempt_at=now, last_error=INTERRUPTED
                    )
                )
                if getattr(moved, "rowcount", 0) == 1:
                    session.add(
                        DeliveryAttempt(
                            delivery_id=delivery_id,
                            user_id=user_id,
                            task_id=task_id,
                            attempted_at=now,
                            success=False,
                            error=INTERRUPTED,
                            duration_ms=0,
                        )
                    )
            due = (
                select(Delivery)
                .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at)
                .limit(limit)
            )
            if not self.settings.is_sqlite:
                due = due.with_for_update(skip_locked=True)
            rows = (await session.scalars(due)).all()
            quota = await self._email_quota(session, rows, now)
            lease_until = now + self.lease
            for delivery in rows:
                if delivery.channel_type == "email":
                    if delivery.user_id not in quota:
                        continue  # the user's row is busy (see _email_quota): the next look
                    if quota[delivery.user_id] <= 0:
                        # The user's hourly email limit: not now, and not an attempt.
                        await session.execute(
                            update(Delivery)
                            .where(
                                Delivery.id == delivery.id,
                                Delivery.status == DeliveryStatus.PENDING,
                            )
                            .values(next_attempt_at=now + timedelta(minutes=10))
                        )
                        continue
                    quota[delivery.user_id] -= 1
                attempts = delivery.attempts  # read before the update refreshes the object
                taken = await session.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery.id, Delivery.status == DeliveryStatus.PENDING)
                    .values(
                        status=DeliveryStatus.SENDING,
                        lease_expires_at=lease_until,
                        attempts=Delivery.attempts + 1,
                    )
                )
                if getattr(taken, "rowcount", 0) != 1:
                    continue
                claimed.append(
                    Outgoing(
                        id=delivery.id,
                        user_id=delivery.user_id,
                        task_id=delivery.task_id,
                        execution_id=delivery.execution_id,
                        channel_index=delivery.channel_index,
                        channel_type=delivery.channel_type,
                        channel=dict(delivery.channel),
                        payload=dict(delivery.payload),
                        attempt=attempts + 1,
                        lease_until=lease_until,
                    )
                )
        return claimed

    # --- sending ---------------------------------------------------------------------------

    async def _email_quota(
        self, session: AsyncSession, rows: Sequence[Delivery], now: datetime
    ) -> dict[uuid.UUID, int]:
        """How many more emails each user with due emails may be sent this hour.

        Decided in the claim transaction, counting emails sent in the last hour and those being
        sent now, so concurrent sends (in this or another process) cannot exceed the limit; on
        PostgreSQL the users' rows are locked so two claimants decide one after the other. The
        deliveries are locked already, so these locks come out of the one order (db.locks) and
        must not wait: a user whose row is busy is left out (their emails wait for the next look).
        """
        users = sorted({d.user_id for d in rows if d.channel_type == "email"})
        if not users:
            return {}
        if not self.settings.is_sqlite:
            locked = await session.scalars(
                select(User.id)
                .where(User.id.in_(users))
                .order_by(User.id)
                .with_for_update(skip_locked=True, key_share=True)
            )
            users = list(locked)
            if not users:
                return {}
        sent = await session.execute(
            select(DeliveryAttempt.user_id, func.count())
            .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
            .where(
                DeliveryAttempt.user_id.in_(users),
                DeliveryAttempt.success.is_(True),
                Delivery.channel_type == "email",
                DeliveryAttempt.attempted_at > now - timedelta(hours=1),
            )
            .group_by(DeliveryAttempt.user_id)
        )
        in_flight = await session.execute(
            select(Delivery.user_id, func.count())
            .where(
                Delivery.user_id.in_(users),
                Delivery.channel_type == "email",
                Delivery.status == DeliveryStatus.SENDING,
            )
            .group_by(Delivery.user_id)
        )
        used = dict.fromkeys(users, 0)
        for user_id, count in [*sent, *in_flight]:
            used[user_id] += count
        return {u: self.settings.email_max_per_hour - n for u, n in used.items()}

    async def send(self, outgoing: Outgoing) -> SendResult:
        if outgoing.channel_type == "webhook":
            async with session_scope(self.sessions, self.write_lock) as session:
                secret = (await webhook_config(session, user_id=outgoing.user_id)).secret
            return await self.webhooks.send(outgoing, secret=secret)
        if outgoing.channel_type == "email":
            return await self.email.send(outgoing)  # the hourly limit was applied at claim
        if outgoing.channel_type == "apprise":
            return await self.apprise.send(outgoing)
        return SendResult(
            False, error=f"unknown channel type {outgoing.channel_type}", permanent=True
        )

    async def deliver(self, outgoing: Outgoing) -> SendResult:
        """Send a claimed delivery and record how it went."""
        started = time.perf_counter()
        try:
            result = await self.send(outgoing)
        except Exception as exc:
            logger.exception("delivery %s failed unexpectedly", outgoing.id)
            result = SendResult(False, error=f"internal error ({type(exc).__name__})")
        await self._record(outgoing, result, int((time.perf_counter() - started) * 1000))
        return result

    async def _record(self, outgoing: Outgoing, result: SendResult, duration_ms: int) -> None:
        now = datetime.now(UTC)
        delays = self.settings.retry_delays
        values: dict[str, object] = {"lease_expires_at": None}
        if result.ok:
            values |= {"status": DeliveryStatus.DELIVERED, "completed_at": now, "last_error": None}
        elif result.permanent or outgoing.attempt > len(delays):
            error = result.error or "failed"
            if not result.permanent:
                error = f"gave up after {outgoing.attempt} attempts: {error}"
            values |= {"status": DeliveryStatus.FAILED, "completed_at": now, "last_error": error}
        else:
            delay = delays[outgoing.attempt - 1] * random.uniform(0.9, 1.1)  # noqa: S311
            values |= {
                "status": DeliveryStatus.PENDING,
                "next_attempt_at": now + timedelta(seconds=delay),
                "last_error": result.error,
            }
        async with session_scope(self.sessions, self.write_lock) as session:
            if result.disable_channel:  # writes the task: its owner's row first (db.locks)
                await locks.lock_users(session, [outgoing.user_id])
            # Only the claim that still holds the lease records: a sender that stalled past it
            # (and was taken over) must not overwrite the new owner's outcome.
            recorded = await session.execute(
                update(Delivery)
                .where(
                    Delivery.id == outgoing.id,
                    Delivery.status == DeliveryStatus.SENDING,
                    Delivery.lease_expires_at == outgoing.lease_until,
                )
                .values(**values)
            )
            if getattr(recorded, "rowcount", 0) != 1:
                return  # taken over, or deleted with its task meanwhile
            session.add(
                DeliveryAttempt(
                    delivery_id=outgoing.id,
                    user_id=outgoing.user_id,
                    task_id=outgoing.task_id,
                    attempted_at=now,
                    success=result.ok,
                    status_code=result.status_code,
                    error=result.error,
                    duration_ms=duration_ms,
                )
            )
            if result.disable_channel:
                await self._disable(session, outgoing)

    async def _disable(self, session: AsyncSession, outgoing: Outgoing) -> None:
        """410 Gone: turn the webhook off, in the task and in the account settings."""
        url = outgoing.channel.get("url")
        task = await session.get(Task, outgoing.task_id)
        if task is not None:
            task.notifications = [
                {**c, "enabled": False} if c.get("type") == "webhook" and c.get("url") == url else c
                for c in task.notifications
            ]
        await session.execute(
            update(WebhookConfig)
            .where(WebhookConfig.user_id == outgoing.user_id, WebhookConfig.url == url)
            .values(enabled=False)
        )
        # Only the host: the path of a webhook URL is often its service's token.
        host = urlsplit(str(url)).hostname
        logger.warning(
            "a webhook on %s (task %s) answered 410 Gone and was turned off",
            host,
            outgoing.task_id,
        )

    # --- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                free = self.concurrency - len(self._sending)
                for outgoing in await self.claim(limit=free, now=datetime.now(UTC)):
                    sending = asyncio.create_task(self.deliver(outgoing))
                    self._sending.add(sending)
                    sending.add_done_callback(self._finished)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("dispatcher tick failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()

    def _finished(self, sending: asyncio.Task[SendResult]) -> None:
        self._sending.discard(sending)
        self._wake.set()
