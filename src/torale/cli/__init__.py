"""The `torale` command: the API client (`auth`, `task`, `feeds`, `mcp`) and the server's
commands (`serve`, `worker`, `migrate`, `keys`, `users`, `signin-link`). Importing it loads the
SDK, not the server: the server's commands import what they need when they run, so the client
works in `pip install torale`."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.console import Console

from torale.cli.client import auth_app, task_app
from torale.cli.feeds import feeds_app
from torale.cli.mcp import mcp
from torale.cli.needs_server import help_panel
from torale.cli.operator import keys_app, signin_link, users_app
from torale.cli.server import register_server_commands

app = typer.Typer(
    name="torale",
    help="Torale: watch the web for a condition and be told when it holds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(auth_app, name="auth", rich_help_panel="Client")
app.add_typer(task_app, name="task", rich_help_panel="Client")
app.add_typer(feeds_app, name="feeds", rich_help_panel="Client")
app.command("mcp", rich_help_panel="Client")(mcp)
register_server_commands(app)
app.add_typer(keys_app, name="keys", rich_help_panel=help_panel())
app.add_typer(users_app, name="users", rich_help_panel=help_panel())
app.command("signin-link", rich_help_panel=help_panel())(signin_link)


def main() -> None:
    try:
        app()
    except ValidationError as exc:
        # Settings are read when a command starts; say which one is wrong, not a traceback.
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            where = f"setting TORALE_{field.upper()}" if field else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            err.print(f"[red]Invalid {where}:[/red] {message}", markup=True)
        raise SystemExit(2) from None
