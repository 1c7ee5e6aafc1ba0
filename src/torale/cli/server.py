"""`torale serve`, `torale worker` and `torale migrate`.

They import the server's modules when they run (see `needs_server`): the client-only install
lists them too.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from torale.cli.invocation import torale_command
from torale.cli.needs_server import help_panel, server_imports

if TYPE_CHECKING:
    from torale.config import Settings

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def operator_prefix(settings: Settings) -> tuple[str, str]:
    """What an operator command needs in front of it to open this server's database, and a
    note for what cannot be printed. The data dir is printed when it is not the default (as an
    absolute path, so it works from any directory), a database URL only without a password,
    a secret key never."""
    from sqlalchemy.engine import make_url

    from torale.config import default_data_dir

    prefix, missing = "", []
    if settings.database_url:
        if make_url(settings.database_url).password is None:
            prefix = f"TORALE_DATABASE_URL={shlex.quote(settings.database_url)} "
        else:
            missing.append("TORALE_DATABASE_URL")
    elif settings.data_dir.absolute() != default_data_dir().absolute():
        prefix = f"TORALE_DATA_DIR={shlex.quote(str(settings.data_dir.absolute()))} "
    if settings.secret_key is not None:
        missing.append("TORALE_SECRET_KEY")
    note = f"in a shell with the server's {' and '.join(missing)}" if missing else ""
    return prefix, note


def print_bootstrap_key(
    email: str, key: str, base_url: str, signin_url: str, settings: Settings
) -> None:
    """The first-start banner: the key, and commands that work exactly as printed."""
    torale = torale_command()
    prefix, note = operator_prefix(settings)
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
    out.print()
    out.print("Or with the command line client (paste the key when it asks):", markup=False)
    out.print(f"    {torale} auth set-api-key --api-url {base_url}", markup=False)
    out.print(f"    {torale} task list", markup=False)
    out.print()
    out.print(
        "More keys and users (add --admin for an admin)" + (f", {note}" if note else "") + ":",
        markup=False,
    )
    out.print(f"    {prefix}{torale} keys create --email you@example.com", markup=False)
    out.print()


WITHOUT_A_MODEL = (
    "Until then tasks that need a model (a search query judged by a model) are refused with "
    "what to set; everything else works: the API and its documentation, users and API keys, "
    "creating and scheduling tasks that watch pages without a model (mode change: notify when "
    "a page or a part of it changes; mode rules: 'price < 50', 'contains \"In stock\"'), "
    "notification channels and webhook tests."
)


def model_warning(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """What a start prints (on stderr) when runs cannot work: no model configured, or the
    configured model's key not set. None when there is nothing to say."""
    from torale.engine.evaluate import model_setup_problem

    problem = model_setup_problem(settings, environ)
    if problem is None:
        return None
    if settings.model:
        return f"Warning: {problem}.\n{WITHOUT_A_MODEL}"
    return "\n".join(
        [
            "Warning: no model is configured, so Torale cannot judge tasks yet. Set "
            "TORALE_MODEL and the provider's key in the server's environment and start it "
            "again, for example:",
            "    TORALE_MODEL=openai:gpt-4o-mini OPENAI_API_KEY=sk-...",
            "    TORALE_MODEL=google:gemini-2.5-flash GOOGLE_API_KEY=...",
            "    TORALE_MODEL=anthropic:claude-sonnet-4-5 ANTHROPIC_API_KEY=...",
            "or, for Ollama or another OpenAI-compatible server (nothing leaves your machine):",
            "    TORALE_OPENAI_BASE_URL=http://localhost:11434/v1 TORALE_MODEL=llama3.1:8b",
            (
                f"(A local Ollama with a model pulled is used by itself: none answered at "
                f"{settings.ollama_url}.)"
                if settings.ollama_autodetect
                else "(TORALE_OLLAMA_AUTODETECT=false: a local Ollama is not looked for.)"
            ),
            WITHOUT_A_MODEL,
        ]
    )


def _find_a_local_model(settings: Settings) -> None:
    """No model configured: use a local Ollama's if one answers (and say so)."""
    from torale.engine.ollama import use_local_model

    found = use_local_model(settings)
    if found:
        err.print(found, markup=False)
        err.print()


def _warn_about_the_model(settings: Settings) -> None:
    warning = model_warning(settings, os.environ)
    if warning:
        err.print(warning, markup=False, style="yellow")
        err.print()


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
        signin_url = signin_links.link_url(base_url, token)
        print_bootstrap_key(email, key, base_url, signin_url, settings)
    _find_a_local_model(settings)
    _warn_about_the_model(settings)

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
    _find_a_local_model(settings)
    _warn_about_the_model(settings)
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
