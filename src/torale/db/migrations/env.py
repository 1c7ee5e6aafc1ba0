"""Alembic environment: uses the connection handed over by `torale.db.migrate`, or makes one."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from torale.config import Settings
from torale.db.models import Base

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # torale.db.migrate runs SQLite migrations inside BEGIN IMMEDIATE with pysqlite's
        # implicit transactions off, so DDL there is transactional too.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or Settings().effective_database_url
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
        await connection.commit()
    await engine.dispose()


def run() -> None:
    if context.is_offline_mode():
        raise SystemExit("Offline (--sql) migrations are not supported; run `torale migrate`.")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:  # plain `alembic upgrade head` / `alembic revision --autogenerate`
        asyncio.run(_run_standalone())


run()
