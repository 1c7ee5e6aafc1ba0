"""The one order in which units of work lock rows, and the helpers that take the first locks.

On PostgreSQL the tasks_version triggers (migrations 0002 and 0003) update the owner's `users`
row whenever one of their tasks or executions is written, so writing a task or an execution
locks its owner's row as well — after the task's or execution's own. Deactivating an account
locks the user and then its tasks. Two orders deadlock; so there is one:

    users (in id order) → tasks → executions → deliveries

Every unit of work that writes tasks or executions first locks their owners' rows (`lock_users`,
`lock_task_owner`, `lock_execution_owners`), so that the triggers' updates of those rows wait for
nothing. The function that opens the unit of work takes these locks (an action, the engine's
claim and record, the scheduler's claim and recovery), before anything else it writes. A lock
taken out of this order must never wait (SKIP LOCKED or NOWAIT): a lock that is not waited for
cannot close a cycle.

The helpers return whether each account is active, read under the lock: the write that follows
is decided on the account's state as it is in the same transaction, so a deactivation commits
either before it (the write sees the account inactive) or after it (the deactivation sees the
write). On SQLite there are no row locks (one writer at a time, and a writer's transaction sees
every commit before it); the helpers only read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Execution, Task, User
from torale.errors import PermissionDeniedError

DEACTIVATED = "This account is deactivated"

_users = cast("Table", User.__table__)
_tasks = cast("Table", Task.__table__)
_executions = cast("Table", Execution.__table__)


def _for_update(statement: Select[Any]) -> tuple[Select[Any], Select[Any]]:
    """The statement as SQLite runs it and as PostgreSQL does: FOR NO KEY UPDATE, what the
    triggers' own UPDATE takes (foreign-key checks of rows that reference the user, FOR KEY
    SHARE, are not blocked by it). Built once: building a statement costs more than running it."""
    return statement, statement.with_for_update(of=_users, key_share=True)


def _locking(session: AsyncSession, statements: tuple[Select[Any], Select[Any]]) -> Select[Any]:
    sqlite = session.bind is not None and session.bind.dialect.name == "sqlite"
    return statements[0] if sqlite else statements[1]


_USERS = _for_update(
    select(_users.c.id, _users.c.is_active)
    .where(_users.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_users.c.id)
)
_TASK_OWNER = _for_update(
    select(_users.c.id, _users.c.is_active).where(
        _users.c.id
        == select(_tasks.c.user_id).where(_tasks.c.id == bindparam("task_id")).scalar_subquery()
    )
)
_EXECUTION_OWNERS = (
    select(_executions.c.user_id)
    .where(_executions.c.id.in_(bindparam("ids", expanding=True)))
    .distinct()
)


async def lock_users(session: AsyncSession, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, bool]:
    """Lock these users' rows in id order; {user id: is active} for those that exist."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await session.execute(_locking(session, _USERS), {"ids": ids})
    return {user_id: bool(active) for user_id, active in rows.all()}


async def lock_active_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Lock the user's row; 403 if the account is deactivated (or gone) by now. For a user's own
    writes: their request authenticated before, and a deactivation may have committed since."""
    if not (await lock_users(session, [user_id])).get(user_id, False):
        raise PermissionDeniedError(DEACTIVATED)


async def lock_task_owner(
    session: AsyncSession, task_id: uuid.UUID
) -> tuple[uuid.UUID, bool] | None:
    """Lock the owner of the task (in one statement); (user id, is active), None without it."""
    statement = _locking(session, _TASK_OWNER)
    row = (await session.execute(statement, {"task_id": task_id})).one_or_none()
    return None if row is None else (row.id, bool(row.is_active))


async def lock_execution_owners(
    session: AsyncSession, execution_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, bool]:
    """Lock the owners of these executions, in id order; {user id: is active}."""
    ids = list(execution_ids)
    if not ids:
        return {}
    owners = await session.scalars(_EXECUTION_OWNERS, {"ids": ids})
    return await lock_users(session, owners)
