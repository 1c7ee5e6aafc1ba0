"""The `torale` command: server and operator commands (the API client commands join later)."""

from __future__ import annotations

import typer

from torale.cli.operator import keys_app, users_app
from torale.cli.server import register_server_commands

app = typer.Typer(
    name="torale",
    help="Torale: watch the web for a condition and be told when it holds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_server_commands(app)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")


def main() -> None:
    app()
