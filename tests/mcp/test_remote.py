"""`torale mcp` (stdio, through the SDK) against the package's real `torale serve`: its key
checked by the server on every call, its tools read from the server, and a server it cannot
reach said so."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from tests.fixtures.api_server import Api
from tests.fixtures.mcp import TOOL_NAMES, call, revoke, stdio_parameters, stdio_session
from tests.fixtures.processes import free_port
from tests.fixtures.sdk_examples import QUERY
from torale.auth.authenticate import INVALID_KEY


async def test_a_revoked_key_is_refused_from_the_next_call(
    api: Api, user_key: str, tmp_path: Path
) -> None:
    async with stdio_session(api.url, user_key, tmp_path) as client:
        assert [t.name for t in (await client.list_tools()).tools] == TOOL_NAMES
        made = (await call(client, "create_task", search_query=QUERY)).value
        revoke(api.url, user_key)
        refused = await call(client, "get_task", task_id=made["id"])
        assert refused.error == f"{INVALID_KEY} (HTTP 401)"
        assert (await call(client, "list_tasks")).error == refused.error


async def test_a_server_it_cannot_reach_is_named(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with stdio_session(nowhere, "sk_" + "a" * 43, tmp_path) as client:
        with pytest.raises(MCPError) as failed:
            await client.list_tools()
        assert str(failed.value) == f"Cannot reach the Torale API (ConnectError) (at {nowhere})"
        with pytest.raises(MCPError):  # still unreachable, and still serving
            await client.call_tool("list_tasks", {})


def test_without_a_key_it_says_what_to_set(api: Api, tmp_path: Path) -> None:
    parameters = stdio_parameters(api.url, None, tmp_path)
    done = subprocess.run(
        [parameters.command, *parameters.args],
        env=parameters.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # stdout is the protocol's
    assert "`torale mcp` needs an API key: set TORALE_API_KEY" in done.stderr
