"""`/mcp` on the API: authenticated and rate-limited as any API request, the tools acting for
the caller alone. In process (SQLite and PostgreSQL, the MCP client through an ASGI
transport), and against the real `torale serve` of the package."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import httpx2
import pytest
from fastapi import FastAPI
from mcp.shared.exceptions import MCPError

from tests.fixtures.api_server import Api
from tests.fixtures.mcp import TOOL_NAMES, call, http_session, revoke
from tests.fixtures.users import ApiUser, set_user_active
from torale.auth.authenticate import INVALID_KEY, MISSING_CREDENTIALS

BASE = "http://torale.test"
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def session(app: FastAPI, user: ApiUser) -> Any:
    return http_session(BASE, user.key, transport=httpx2.ASGITransport(app=app))


def refused(detail: str, status: int) -> dict[str, Any]:
    """A refusal of `/mcp`: the API's `{"detail"}`, and a JSON-RPC error for MCP clients."""
    error = {"code": -32000, "message": f"{detail} (HTTP {status})"}
    return {"detail": detail, "jsonrpc": "2.0", "id": None, "error": error}


def in_chain(exc: BaseException, text: str) -> bool:
    """Whether `text` is in `exc`, its causes or (for a group) its members."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop()
        if text in str(current):
            return True
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        seen.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


async def test_tools_act_for_the_caller_alone(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser
) -> None:
    made = await client.post(
        "/api/v1/tasks", json={"search_query": "next iPhone"}, headers=alice.headers
    )
    task_id = made.json()["id"]
    async with session(app, alice) as alice_mcp, session(app, bob) as bob_mcp:
        mine = (await call(alice_mcp, "get_task", task_id=task_id)).value
        api = await client.get(f"/api/v1/tasks/{task_id}", headers=alice.headers)
        assert mine == api.json()  # what the API answers
        assert (await call(bob_mcp, "list_tasks")).value["items"] == []
        refused = await call(bob_mcp, "update_task", task_id=task_id, name="bob's")
        assert refused.error == "Task not found (HTTP 404)"
        assert (await call(bob_mcp, "delete_task", task_id=task_id)).error == refused.error
        listed = (await call(alice_mcp, "list_tasks")).value
    assert [t["name"] for t in listed["items"]] == ["next iPhone"]  # unchanged, not deleted


async def test_service_refusals_keep_their_fields(app: FastAPI, alice: ApiUser) -> None:
    async with session(app, alice) as alice_mcp:
        refused = await call(
            alice_mcp,
            "create_task",
            search_query="q",
            urls=["http://10.0.0.7/"],
            schedule="* * * * *",
        )
        assert refused.error == (
            "schedule: Schedule runs too often: runs can be 60 seconds apart, and this "
            "server's minimum is 300 seconds; urls.0: URL points to a private, loopback or "
            "link-local address (HTTP 422)"
        )
        with pytest.raises(MCPError, match="Unknown tool: archive_task"):
            await alice_mcp.call_tool("archive_task", {})


async def test_missing_deactivated_and_unknown_callers_are_refused(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    missing = await client.post("/mcp", json=LIST, headers=ACCEPT)
    assert (missing.status_code, missing.json()) == (401, refused(MISSING_CREDENTIALS, 401))
    assert missing.headers["www-authenticate"] == "Bearer"
    unknown = await client.post(
        "/mcp", json=LIST, headers=ACCEPT | {"Authorization": "Bearer sk_" + "a" * 43}
    )
    assert (unknown.status_code, unknown.json()) == (401, refused(INVALID_KEY, 401))
    # The MCP client shows the API's message.
    with pytest.raises(BaseException) as failed:  # noqa: PT011 - checked below
        async with http_session(BASE, None, transport=httpx2.ASGITransport(app=app)) as c:
            await c.list_tools()
    assert in_chain(failed.value, f"{MISSING_CREDENTIALS} (HTTP 401)")

    await set_user_active(app, alice.id, False)
    deactivated = await client.post("/mcp", json=LIST, headers=ACCEPT | alice.headers)
    assert deactivated.status_code == 403
    assert deactivated.json() == refused("This account is deactivated", 403)


@pytest.mark.parametrize("settings_overrides", [{"rate_limits": "3/minute"}])
async def test_mcp_and_the_api_share_the_callers_rate_limit(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    headers = ACCEPT | alice.headers
    first = await client.post("/mcp", json=LIST, headers=headers)
    assert first.status_code == 200, first.text
    assert [t["name"] for t in first.json()["result"]["tools"]] == TOOL_NAMES
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
        "3",
        "2",
    )
    api = await client.get("/api/v1/tasks", headers=alice.headers)
    assert api.headers["x-ratelimit-remaining"] == "1"
    call_tool = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "list_tasks", "arguments": {}},
    }
    third = await client.post("/mcp", json=call_tool, headers=headers)
    assert third.headers["x-ratelimit-remaining"] == "0"
    assert json.loads(third.json()["result"]["content"][0]["text"])["total"] == 0
    over = await client.post("/mcp", json=call_tool, headers=headers)
    assert over.status_code == 429
    assert over.json() == refused("Rate limit exceeded: 3 per 1 minute", 429)
    assert int(over.headers["retry-after"]) > 0


def test_the_mcp_library_is_loaded_on_first_use(tmp_path: Any) -> None:
    """An API that nobody asks for tools does not pay for the MCP library (~1 s, ~20 MB)."""
    code = (
        "import sys; from torale.app import create_app; from torale.config import Settings; "
        f"create_app(Settings(_env_file=None, data_dir={str(tmp_path)!r}, "
        "secret_key='x' * 40), scheduler=False); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- against the real server -----------------------------------------------------------------


async def test_a_revoked_key_is_refused_from_the_next_request(api: Api, user_key: str) -> None:
    async with http_session(api.url, user_key) as client:
        assert (await call(client, "list_tasks")).value["total"] == 0
        revoke(api.url, user_key)
        with pytest.raises(BaseException) as failed:  # noqa: PT011 - checked below
            await client.call_tool("list_tasks", {})
    assert in_chain(failed.value, f"{INVALID_KEY} (HTTP 401)")
    answer = httpx.post(
        f"{api.url}/mcp", json=LIST, headers=ACCEPT | {"Authorization": f"Bearer {user_key}"}
    )
    assert (answer.status_code, answer.json()) == (401, refused(INVALID_KEY, 401))


def test_answers_carry_the_rate_limit_headers(api: Api, user_key: str) -> None:
    headers = ACCEPT | {"Authorization": f"Bearer {user_key}"}
    answer = httpx.post(f"{api.url}/mcp", json=LIST, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert [t["name"] for t in answer.json()["result"]["tools"]] == TOOL_NAMES
    assert answer.headers["x-ratelimit-limit"] == "100000"
    assert int(answer.headers["x-ratelimit-remaining"]) < 100000
