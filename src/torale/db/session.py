"""The request's unit of work, as a FastAPI dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.database import session_scope

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    state = request.app.state.torale
    reads = request.method in _READ_METHODS
    lock = None if reads else state.write_lock
    # A GET may still write (the webhook settings are made on first read): not `reading`.
    async with session_scope(state.sessions, lock, writes=not reads, reader=False) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client never sees
# success for a write that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]
