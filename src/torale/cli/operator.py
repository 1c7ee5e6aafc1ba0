"""`torale keys …` and `torale users …`: operator commands that work on the database directly.

They import the server's modules when they run (see `needs_server`).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from torale.cli.needs_server import server_imports

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)
keys_app = typer.Typer(help="Create API keys.", no_args_is_help=True)
users_app = typer.Typer(help="List users and change their role.", no_args_is_help=True)
USER_COLUMNS = ("email", "role", "active", "keys", "tasks", "created", "id")


def _user_id(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        err.print(f"[red]--user-id: {value!r} is not a user id (see torale users list)[/red]")
        raise typer.Exit(1) from None


@keys_app.command("create")
def create_key(
    email: Annotated[
        str | None,
        typer.Option(help="The user's email; the user is created if new."),
    ] = None,
    user_id: Annotated[
        str | None,
        typer.Option(
            "--user-id",
            help="The user's id (torale users list): needed for an account made by a sign-in "
            "through the identity provider.",
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "cli",
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
) -> None:
    """Create an API key (and the user, if new). The key is printed once.

    An email that belongs to an account made by a sign-in through the identity provider is
    refused: that address came from a sign-in token, not from you. Check who it is and pass
    --user-id.
    """
    if email is None and user_id is None:
        err.print("[red]Give the user: --email EMAIL (or --user-id ID).[/red]")
        raise typer.Exit(2)
    account_id = _user_id(user_id)
    with server_imports("keys create"):
        from torale.auth import service as auth_service
        from torale.cli.database import open_session, run_db
        from torale.config import Settings

    settings = Settings()

    async def work() -> tuple[str, bool, str]:
        async with open_session(settings) as session:
            user = await auth_service.account_for_operator(session, email=email, user_id=account_id)
            created = user is None
            if user is None:
                assert email is not None  # by id, a missing user is an error
                user = await auth_service.create_user(
                    session, email=email, role="admin" if admin else "user"
                )
            elif admin and user.role != "admin":
                user.role = "admin"
            _, raw = await auth_service.create_api_key(
                session, user_id=user.id, name=name, hashing_key=settings.hashing_key
            )
            who = user.email or "(no email)"
            if account_id is not None:
                who = f"{who} (id {user.id})"
        return raw, created, who

    raw, created, who = run_db(settings, work)
    if created:
        who = f"new {'admin' if admin else 'user'} {who}"
    err.print(f"API key for {who} (shown only once):")
    out.print(raw, markup=False)


@users_app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every user with role, status, active key count and task count."""
    with server_imports("users list"):
        from torale.auth import service as auth_service
        from torale.cli.database import open_session, run_db
        from torale.config import Settings

    settings = Settings()

    async def work() -> list[dict[str, object]]:
        async with open_session(settings) as session:
            rows = await auth_service.list_users_with_counts(session)
        return [
            {
                "id": str(user.id),
                "email": user.email,
                "role": user.role,
                "is_active": user.is_active,
                "api_keys": keys,
                "tasks": tasks,
                "created_at": user.created_at.isoformat(),
            }
            for user, keys, tasks in rows
        ]

    users = run_db(settings, work)
    if as_json:
        typer.echo(json.dumps(users, indent=2))
        return
    rows = [
        [
            str(u["email"] or "-"),
            str(u["role"]),
            "yes" if u["is_active"] else "no",
            str(u["api_keys"]),
            str(u["tasks"]),
            str(u["created_at"])[:19],
            str(u["id"]),
        ]
        for u in users
    ]
    if not out.is_terminal:
        # Piped: a header line, then whole values, one user a line, tab-separated, for
        # grep/cut/awk; rich would truncate to fit.
        for row in [list(USER_COLUMNS), *rows]:
            typer.echo("\t".join(row))
        return
    table = Table(*USER_COLUMNS)
    for column in (table.columns[0], table.columns[6]):
        column.overflow = "fold"
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _set_role(email: str | None, role: Literal["user", "admin"], user_id: str | None) -> None:
    if email is None and user_id is None:
        err.print("[red]Give the user: EMAIL (or --user-id ID).[/red]")
        raise typer.Exit(2)
    account_id = _user_id(user_id)
    with server_imports(f"users {'promote' if role == 'admin' else 'demote'}"):
        from torale.auth import service as auth_service
        from torale.cli.database import open_session, run_db
        from torale.config import Settings

    settings = Settings()

    async def work() -> str:
        async with open_session(settings) as session:
            user = await auth_service.set_role(session, email=email, role=role, user_id=account_id)
            return user.email or str(user.id)

    who = run_db(settings, work)
    out.print(f"{who} is now {'an admin' if role == 'admin' else 'a user'}.")


_USER_ID_OPTION = typer.Option(
    "--user-id", help="The user's id instead of the email (torale users list)."
)


@users_app.command("promote")
def promote(
    email: Annotated[str | None, typer.Argument(help="The user's email.")] = None,
    user_id: Annotated[str | None, _USER_ID_OPTION] = None,
) -> None:
    """Give a user the admin role. An account made by a sign-in through the identity provider
    is named by --user-id (its email came from a sign-in token, not from you)."""
    _set_role(email, "admin", user_id)


@users_app.command("demote")
def demote(
    email: Annotated[str | None, typer.Argument(help="The user's email.")] = None,
    user_id: Annotated[str | None, _USER_ID_OPTION] = None,
) -> None:
    """Take the admin role away from a user."""
    _set_role(email, "user", user_id)
