"""Opening the database from the command line, with errors that say what to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from torale.cli.invocation import torale_command
from torale.config import Settings
from torale.db import migrate
from torale.db.database import create_engine, create_sessionmaker
from torale.errors import ToraleError

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.effective_database_url).render_as_string(hide_password=True)


def _no_such_file(path: str | None) -> bool:
    if not path or path == ":memory:":
        return False
    file = Path(path)
    return not file.exists() or file.stat().st_size == 0


async def is_new_database(settings: Settings) -> bool:
    """Whether the database has no schema yet: a SQLite file that does not exist (or is
    empty), a PostgreSQL database without migrations. Looked at without creating anything."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        return _no_such_file(url.database)
    return await migrate.current_revision(settings.effective_database_url) is None


def announce_new_database(settings: Settings) -> None:
    """Say on stderr where the new database is: an operator command run without the server's
    TORALE_DATA_DIR would otherwise quietly work on a database of its own."""
    where = _safe_url(settings)
    if not settings.database_url:
        data_dir = settings.data_dir.absolute()
        where = f"{data_dir / 'torale.db'} (TORALE_DATA_DIR is {data_dir})"
    err.print(
        "[yellow]New database:[/yellow] Torale is creating an empty database at "
        f"{escape(where)}. If your server keeps its data elsewhere, set TORALE_DATA_DIR "
        "(or TORALE_DATABASE_URL) as it does."
    )


async def prepare_database(settings: Settings) -> None:
    """Migrate (or, with migrations off, check the schema is current). A database created
    here is announced on stderr."""
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.effective_database_url
    if settings.migrate_on_start:
        if await is_new_database(settings):
            announce_new_database(settings)
        await migrate.upgrade(url)
        return
    current, head = await migrate.current_revision(url), migrate.head_revision()
    if current != head:
        err.print(
            f"[red]The database schema at {escape(_safe_url(settings))} is at "
            f"{current or 'nothing'}, not {head}.[/red] Run `{escape(torale_command())} migrate` "
            "first."
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
