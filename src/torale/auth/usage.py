"""`last_used_at` of API keys, recorded in memory and written in batches, not per request."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from torale.db.models import ApiKey

logger = logging.getLogger("torale.auth")


class KeyUsageRecorder:
    def __init__(self, flush_seconds: float = 30.0) -> None:
        self.flush_seconds = flush_seconds
        self._pending: dict[uuid.UUID, datetime] = {}

    def record(self, key_id: uuid.UUID) -> None:
        self._pending[key_id] = datetime.now(UTC)

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            async with sessions() as session:
                for key_id, used_at in pending.items():
                    # Never move the time backwards when several processes flush.
                    await session.execute(
                        update(ApiKey)
                        .where(ApiKey.id == key_id)
                        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < used_at))
                        .values(last_used_at=used_at)
                    )
                await session.commit()
        except Exception:
            logger.warning("could not record API key usage; will retry", exc_info=True)
            for key_id, used_at in pending.items():
                self._pending.setdefault(key_id, used_at)
            return 0
        return len(pending)

    async def run(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_seconds)
                await self.flush(sessions)
        finally:
            await self.flush(sessions)
