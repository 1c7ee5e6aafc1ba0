"""Rate limits with `limits`: counters in memory in one process, in Redis when shared.

Two budgets, counted under identities that `auth.authenticate` chooses:

- **requests**, per user (`TORALE_RATE_LIMITS`): every key of a user and their sign-in tokens
  share one budget, so making more keys does not make more budget;
- **failed authentication**, per client address (`TORALE_AUTH_FAILURE_LIMITS`): an address
  past it is refused (429) before its credentials are even looked at, until the window ends.
  Each process remembers the addresses it saw go past the budget, so a refused address costs
  no counter round trip.

Each window is a fixed window that starts at its first hit. Windows are hit shortest first and
the first exhausted one stops the request, so requests refused by the minute window never use
up the hour or day budgets. Counters are atomic increments in Redis, which is what makes several
API processes share one budget exactly.

**Redis failing.** Rate limiting fails open: when Redis errs or does not answer within its
timeout, the request passes unlimited. A circuit breaker then stops asking Redis for
`REDIS_RETRY_SECONDS`: requests pass at once instead of each waiting out the timeout on a Redis
that accepts connections and never answers. After that, one PING in the background (no request
waits for it) decides whether Redis is used again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError

from torale.errors import RateLimitedError
from torale.retry_after import retry_after_header

logger = logging.getLogger("torale.ratelimit")

_WARN_EVERY_SECONDS = 60.0
REDIS_TIMEOUT_SECONDS = 2.0
REDIS_RETRY_SECONDS = 5.0
_MAX_BLOCKED = 10_000


def parse_rate_limits(spec: str, setting: str = "TORALE_RATE_LIMITS") -> list[RateLimitItem]:
    """Parse `100/minute;1000/hour;…`; raises ValueError with the reason when malformed."""
    try:
        items = parse_many(spec)
    except ValueError as exc:
        raise ValueError(f"{setting} is not valid ({spec!r}): {exc}") from None
    if not items:
        raise ValueError(f"{setting} names no limit")
    return sorted(items, key=lambda item: item.get_expiry())


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # Unix time the window ends
    exceeded: RateLimitItem | None = None

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """`X-RateLimit-*` as ASGI header pairs (built on every request: kept direct)."""
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset)).encode()),
        ]

    @property
    def retry_after(self) -> float:
        """Seconds until the window ends."""
        return self.reset - time.time()

    def refusal(self) -> RateLimitedError:
        """The 429 of a request over its budget: the documented body, `Retry-After` and the
        `X-RateLimit-*` headers."""
        # Header names are case-insensitive (and sent in lower case, as ASGI has them).
        headers = {name.decode(): value.decode() for name, value in self.raw_headers()}
        headers["retry-after"] = retry_after_header(self.retry_after)
        return RateLimitedError(f"Rate limit exceeded: {self.exceeded}", headers=headers)

    def failure_refusal(self) -> RateLimitedError:
        """The 429 of an address past its budget of failed authentication."""
        return RateLimitedError(
            "Too many failed authentication attempts from this address "
            f"({self.exceeded}); try again later",
            headers={"Retry-After": retry_after_header(self.retry_after)},
        )


class CircuitBreaker:
    """Closed: ask the store. Open after a failure: do not, for `retry_seconds`; then one probe
    in the background closes it again when the store answers."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[bool]],
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._open_until: float | None = None
        self._probing: asyncio.Task[None] | None = None
        self._last_warning = float("-inf")

    def allows(self) -> bool:
        """Whether to ask the store now (when not, a probe is started once it is due)."""
        if self._open_until is None:
            return True
        if self._probing is None and self._clock() >= self._open_until:
            self._probing = asyncio.create_task(self._try_again())
        return False

    def failed(self) -> None:
        now = self._clock()
        self._open_until = now + self.retry_seconds
        if now - self._last_warning > _WARN_EVERY_SECONDS:
            self._last_warning = now
            logger.warning("rate-limit store unreachable; requests pass unlimited")

    async def _try_again(self) -> None:
        try:
            answered = await self._probe()
        except Exception:
            answered = False
        if answered:
            self._open_until = None
            logger.info("rate-limit store answers again; limits apply")
        else:
            self._open_until = self._clock() + self.retry_seconds
        self._probing = None

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)


class RateLimiter:
    def __init__(
        self,
        spec: str,
        redis_url: str | None = None,
        key_prefix: str = "torale",
        *,
        failure_spec: str = "30/minute",
        redis_timeout: float = REDIS_TIMEOUT_SECONDS,
        redis_retry_seconds: float = REDIS_RETRY_SECONDS,
    ) -> None:
        self.items = parse_rate_limits(spec)
        self.failure_items = parse_rate_limits(failure_spec, "TORALE_AUTH_FAILURE_LIMITS")
        self.storage: Storage
        if redis_url:
            self.storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=key_prefix,
                wrap_exceptions=True,
                socket_connect_timeout=redis_timeout,
                socket_timeout=redis_timeout,
            )
        else:
            self.storage = MemoryStorage()
        self.breaker = CircuitBreaker(self.storage.check, redis_retry_seconds)
        # Addresses seen past their failure budget, until their window ends (Unix time).
        self._blocked: dict[str, RateLimitResult] = {}

    async def hit(
        self, identity: str, items: list[RateLimitItem] | None = None
    ) -> RateLimitResult | None:
        """Count one request against `items` (the request windows by default). None when the
        counter store is unreachable (the request passes)."""
        if not self.breaker.allows():
            return None  # fail open at once: Redis failed a moment ago
        try:
            return await self._hit(identity, items or self.items)
        except StorageError:
            # Fail open: an unreachable Redis must not take the API down with it.
            self.breaker.failed()
            return None

    @property
    def blocking(self) -> bool:
        """Whether this process refuses any address (past its failure budget) right now."""
        return bool(self._blocked)

    def blocked(self, identity: str) -> RateLimitResult | None:
        """The exhausted failure budget of `identity`, if this process saw it go past; no I/O."""
        result = self._blocked.get(identity)
        if result is not None and result.reset <= time.time():
            del self._blocked[identity]
            return None
        return result

    async def hit_failure(self, identity: str) -> RateLimitResult | None:
        """Count one failed authentication; the result tells whether the budget is exhausted."""
        result = await self.hit("auth-failure:" + identity, self.failure_items)
        if result is not None and not result.allowed:
            if len(self._blocked) >= _MAX_BLOCKED:
                now = time.time()
                self._blocked = {k: v for k, v in self._blocked.items() if v.reset > now}
                while len(self._blocked) >= _MAX_BLOCKED:
                    del self._blocked[next(iter(self._blocked))]  # the oldest
            self._blocked[identity] = result
        return result

    async def _hit(self, identity: str, items: list[RateLimitItem]) -> RateLimitResult:
        tightest: tuple[int, RateLimitItem, str] | None = None
        for item in items:
            key = item.key_for(identity)
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
        await self.breaker.close()
        if isinstance(self.storage, RedisStorage):
            bridge = getattr(self.storage, "bridge", None)
            client = getattr(bridge, "storage", None)
            if client is not None and hasattr(client, "aclose"):
                await client.aclose()
