"""Per-key rate limits (docs/api.md §3) with `limits`: memory in one process, Redis when shared.

Each window is a fixed window that starts at its first hit. Windows are hit shortest first and
the first exhausted one stops the request, so requests refused by the minute window never use
up the hour or day budgets. Counters are atomic increments in Redis, which is what makes several
API processes share one budget exactly.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError

logger = logging.getLogger("torale.ratelimit")

_WARN_EVERY_SECONDS = 60.0


def parse_rate_limits(spec: str) -> list[RateLimitItem]:
    """Parse `100/minute;1000/hour;…`; raises ValueError with the reason when malformed."""
    try:
        items = parse_many(spec)
    except ValueError as exc:
        raise ValueError(f"TORALE_RATE_LIMITS is not valid ({spec!r}): {exc}") from None
    if not items:
        raise ValueError("TORALE_RATE_LIMITS names no limit")
    return sorted(items, key=lambda item: item.get_expiry())


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # Unix time the window ends
    exceeded: RateLimitItem | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset)).encode()),
        ]

    @property
    def retry_after(self) -> int:
        """Whole seconds until the window ends (rounded up, at least 1)."""
        return max(1, math.ceil(self.reset - time.time()))


class RateLimiter:
    def __init__(self, spec: str, redis_url: str | None = None, key_prefix: str = "torale") -> None:
        self.items = parse_rate_limits(spec)
        self.storage: Storage
        if redis_url:
            self.storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=key_prefix,
                wrap_exceptions=True,
                socket_connect_timeout=2.0,
                socket_timeout=2.0,
            )
        else:
            self.storage = MemoryStorage()
        self._last_warning = float("-inf")

    async def hit(self, identifier: str) -> RateLimitResult | None:
        """Count one request. None when the counter store is unreachable (the request passes)."""
        try:
            return await self._hit(identifier)
        except StorageError:
            # Fail open: an unreachable Redis must not take the API down with it.
            now = time.monotonic()
            if now - self._last_warning > _WARN_EVERY_SECONDS:
                self._last_warning = now
                logger.warning("rate-limit store unreachable; requests pass unlimited")
            return None

    async def _hit(self, identifier: str) -> RateLimitResult:
        tightest: tuple[int, RateLimitItem, str] | None = None
        for item in self.items:
            key = item.key_for(identifier)
            count = await self.storage.incr(key, item.get_expiry())
            remaining = item.amount - count
            if remaining < 0:
                reset = await self.storage.get_expiry(key)
                return RateLimitResult(False, item.amount, 0, reset, exceeded=item)
            if tightest is None or remaining < tightest[0]:
                tightest = (remaining, item, key)
        assert tightest is not None
        remaining, item, key = tightest
        reset = await self.storage.get_expiry(key)
        return RateLimitResult(True, item.amount, remaining, reset)

    async def close(self) -> None:
        if isinstance(self.storage, RedisStorage):
            bridge = getattr(self.storage, "bridge", None)
            client = getattr(bridge, "storage", None)
            if client is not None and hasattr(client, "aclose"):
                await client.aclose()
