"""`torale serve`, `torale worker` and `torale migrate`.

They import the server's modules when they run (see `needs_server`): the client-only install
lists them too.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from rich.console import Console

from torale.cli.needs_server import help_panel, server_imports

out = Console(soft_wrap=True, highlight=False)


def _print_bootstrap_key(email: str, key: str, base_url: str, signin_url: str) -> None:
    out.print()
    out.print(f"[bold]Torale created the admin user {email} and this API key.[/bold]")
    out.print("It is shown only this once; store it now:")
    out.print()
    out.print(f"    {key}", markup=False)
    out.print()
    out.print("Open Torale in your browser (this link signs you in once, within 15 minutes):")
    out.print(f"    {signin_url}", markup=False)
    out.print()
    out.print("Try it:", markup=False)
    out.print(f'    curl -H "Authorization: Bearer {key}" {base_url}/api/v1/tasks', markup=False)
    out.print("More keys and users: torale keys create --email you@example.com [--admin]")
    out.print()


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (TORALE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (TORALE_PORT).")] = None,
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler/--no-scheduler",
            help="Run scheduled tasks in this process (--no-scheduler: API only, for replicas "
            "next to `torale worker` processes).",
        ),
    ] = True,
) -> None:
    """Run the API server (migrating the database first)."""
    with server_imports("serve"):
        import uvicorn

        from torale.auth import service as auth_service
        from torale.auth import signin_links
        from torale.cli.database import open_session, run_db
        from torale.config import Settings
        from torale.logs import configure_logging

    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    configure_logging(settings.log_level)

    async def bootstrap() -> tuple[str, str, str] | None:
        async with open_session(settings) as session:
            made = await auth_service.bootstrap_admin(
                session, email=settings.admin_email, hashing_key=settings.hashing_key
            )
            if made is None:
                return None
            token = await signin_links.create(
                session, user_id=made[0].id, hashing_key=settings.hashing_key
            )
        return made[0].email or settings.admin_email, made[1], token

    made = run_db(settings, bootstrap)
    if made:
        base_url = settings.public_base_url
        email, key, token = made
        _print_bootstrap_key(email, key, base_url, signin_links.link_url(base_url, token))

    from torale.app import create_app

    uvicorn.run(
        create_app(settings, scheduler=scheduler),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # uvicorn's loggers (the access log too) go through ours: one line each, `token=` redacted.
        log_config=None,
        proxy_headers=False,
    )


def migrate_command() -> None:
    """Bring the database schema up to date."""
    with server_imports("migrate"):
        from torale.cli.database import run_db
        from torale.config import Settings
        from torale.db import migrate

    settings = Settings()
    settings.migrate_on_start = True

    async def revision() -> str | None:
        return await migrate.current_revision(settings.effective_database_url)

    current = run_db(settings, revision)
    typer.echo(f"Database schema is at revision {current}.")


def worker() -> None:
    """Run scheduled work without the API: database worker, or Temporal worker."""
    with server_imports("worker"):
        from torale.cli.database import run_db
        from torale.config import Settings
        from torale.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)

    async def no_op() -> None:
        return None

    run_db(settings, no_op)  # the schema must be current (migrated when allowed)
    with server_imports("worker"):
        from torale.scheduling.worker import run_worker

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())


def register_server_commands(app: typer.Typer) -> None:
    panel = help_panel()
    app.command("serve", rich_help_panel=panel)(serve)
    app.command("worker", rich_help_panel=panel)(worker)
    app.command("migrate", rich_help_panel=panel)(migrate_command)
