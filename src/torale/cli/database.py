"""Opening the database from the command line, with errors that say what to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from torale.config import Settings
from torale.db import migrate
from torale.db.database import create_engine, create_sessionmaker
from torale.errors import ToraleError

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.effective_database_url).render_as_string(hide_password=True)


async def prepare_database(settings: Settings) -> None:
    """Migrate (or, with migrations off, check the schema is current)."""
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.effective_database_url
    if settings.migrate_on_start:
        await migrate.upgrade(url)
        return
    current, head = await migrate.current_revision(url), migrate.head_revision()
    if current != head:
        err.print(
            f"[red]The database schema is at {current or 'nothing'}, not {head}.[/red] "
            "Run `torale migrate` first."
        )
        raise typer.Exit(1)


@asynccontextmanager
async def open_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
            await session.commit()
    finally:
        await engine.dispose()


def run_db(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` with friendly errors: a failure to connect, or a ToraleError, exits 1."""
    try:
        return asyncio.run(_prepared(settings, work))
    except ToraleError as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    except (OperationalError, DBAPIError, OSError) as exc:
        err.print(
            f"[red]Cannot use the database at {_safe_url(settings)}:[/red] "
            f"{getattr(exc, 'orig', exc)}\nCheck TORALE_DATABASE_URL (and that the server runs)."
        )
        raise typer.Exit(1) from None


async def _prepared(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    await prepare_database(settings)
    return await work()
