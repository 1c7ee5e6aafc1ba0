"""What the API process holds: the background services and the web parts built on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from torale.auth.authenticate import Authenticator
from torale.auth.jwt import JWTVerifier
from torale.auth.lookup import KeyLookup, SessionLookup
from torale.auth.oidc import OidcProvider
from torale.auth.usage import KeyUsageRecorder
from torale.db.changes import ChangeWatch
from torale.logs import slow_step
from torale.ratelimit import RateLimiter
from torale.services import Services
from torale.tasks.list_cache import TaskListCache

if TYPE_CHECKING:
    from torale.metrics import Metrics
    from torale.web.page_cache import PageCache


@dataclass(kw_only=True)
class AppState(Services):
    rate_limiter: RateLimiter
    key_usage: KeyUsageRecorder
    jwt: JWTVerifier | None
    oidc: OidcProvider | None  # browser sign-in with an identity provider, when configured
    hashing_key: bytes
    changes: ChangeWatch  # what the lookups and caches below ask before trusting themselves
    key_lookup: KeyLookup
    session_lookup: SessionLookup
    task_lists: TaskListCache
    pages: PageCache  # rendered web pages
    metrics: Metrics
    authenticator: Authenticator  # on the parts above

    async def close(self) -> None:
        with slow_step("the rate limiter"):
            await self.rate_limiter.close()
        with slow_step("the database change watch"):
            await self.changes.close()
        await super().close()


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.torale
    return state
