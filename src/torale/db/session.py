"""The request's unit of work, as a FastAPI dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.engine import session_scope


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(request.app.state.torale.sessions):
        yield session


# scope="function": the commit happens before the response is sent, so a client never sees
# success for a write that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]
