"""The server's commands in an install without the server.

`pip install torale` is the SDK and the client commands (`torale auth`, `torale task`); the
server's libraries come with `pip install 'torale[server]'`. The server and operator commands are
always listed, and import the server's modules only when they run, inside `server_imports`:
without the server installed they say what to install instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec

import typer
from rich.console import Console
from rich.markup import escape

INSTALL_SERVER = "pip install 'torale[server]'"


def server_installed() -> bool:
    """Whether the server's libraries are there (looked up, not imported: it is cheap)."""
    return all(find_spec(name) is not None for name in ("fastapi", "sqlalchemy", "uvicorn"))


def help_panel() -> str:
    """Where `torale --help` lists the server's commands."""
    return "Server" if server_installed() else escape(f"Server (needs: {INSTALL_SERVER})")


@contextmanager
def server_imports(command: str) -> Iterator[None]:
    """Wrap a server command's imports: a missing library ends the command (exit code 1) with
    what to install. A missing module of Torale's own is a bug, and is raised as it is."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "torale":
            raise
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        err.print(
            f"[red]`torale {command}` needs the server:[/red] {escape(INSTALL_SERVER)}\n"
            f"(the library {escape(repr(exc.name))} is not installed; this install has the SDK "
            "and the client commands, `torale auth` and `torale task`)",
            markup=True,
        )
        raise typer.Exit(1) from None
