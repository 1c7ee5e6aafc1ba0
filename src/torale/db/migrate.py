"""Run Alembic migrations from code (`torale migrate`, `torale serve`, tests)."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant: concurrent `torale serve` starts on PostgreSQL migrate one at a time.
_PG_ADVISORY_LOCK_ID = 7_316_231_105


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _migration_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url)
    if url.startswith("sqlite"):
        # pysqlite does not BEGIN before DDL, so each CREATE would commit on its own.
        # Take over transaction control so a migration is all-or-nothing on SQLite too.
        @event.listens_for(engine.sync_engine, "connect")
        def _no_implicit_transactions(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@asynccontextmanager
async def _sqlite_file_lock(url: str) -> AsyncIterator[None]:
    """Serialise migrations of one SQLite file across processes (and tasks) on this machine."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handle = await asyncio.to_thread(open, f"{path}.migrate-lock", "w")
    with handle:
        # Wait in a thread: a blocking flock on the event loop would deadlock against another
        # migration in this same process that holds the lock and needs the loop to finish.
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_upgrade(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _run_downgrade(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision`, safely when several processes start at once."""
    await _run(url, _run_upgrade, revision)


async def downgrade(url: str, revision: str) -> None:
    await _run(url, _run_downgrade, revision)


async def _run(url: str, action: object, revision: str) -> None:
    config = alembic_config(url)
    engine = _migration_engine(url)
    try:
        lock = _sqlite_file_lock(url) if url.startswith("sqlite") else _null()
        async with lock, engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_ADVISORY_LOCK_ID}
                )
            await conn.run_sync(action, config, revision)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


@asynccontextmanager
async def _null() -> AsyncIterator[None]:
    yield


async def current_revision(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
            )
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
