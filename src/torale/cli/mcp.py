"""`torale mcp`: Torale's tools for an AI assistant that starts a command (MCP over stdio).

It talks to a Torale server through the SDK, with the key and server the other client
commands use (`TORALE_API_KEY` / `TORALE_API_URL`, or `torale auth set-api-key`). It needs the
MCP library, which `pip install torale` does not bring: `pip install 'torale[mcp]'` (the
server's install has it).
"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.markup import escape

from torale.cli.invocation import torale_command
from torale.sdk import ConfigurationError, ToraleAsync
from torale.sdk.config import resolve

INSTALL_MCP = "pip install 'torale[mcp]'"


def mcp() -> None:
    """Serve Torale's tools to an AI assistant over stdio (Model Context Protocol): tasks,
    runs, notifications, diffs and suggestions of the key's user. Your assistant starts this
    command; nothing but the protocol is written to stdout."""
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        connection = resolve()
    except ConfigurationError as exc:
        err.print(f"[red]Error:[/red] {escape(exc.message)}")
        raise typer.Exit(1) from None
    if not connection.api_key:
        err.print(
            "[red]`torale mcp` needs an API key:[/red] set TORALE_API_KEY (and TORALE_API_URL) "
            f"in the assistant's configuration, or save one with: "
            f"{escape(torale_command())} auth set-api-key"
        )
        raise typer.Exit(1)
    try:
        from torale.mcp.remote import TIMEOUT, serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "torale":
            raise
        err.print(f"[red]`torale mcp` needs the MCP library:[/red] {escape(INSTALL_MCP)}")
        raise typer.Exit(1) from None
    client = ToraleAsync(api_key=connection.api_key, api_url=connection.api_url, timeout=TIMEOUT)

    async def run() -> None:
        async with client:
            await serve(client)

    asyncio.run(run())
