"""`torale` without the server's libraries, in this environment (quick; the real client-only
install is tests/sdk/test_light_install.py).

Importing the package, the SDK or the CLI loads none of the server's modules, and with the
server's libraries hidden the client commands work while the server's commands say what to
install, without a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVER_LIBRARIES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "pydantic_settings",
    "temporalio",
    "pydantic_ai",
    "trafilatura",
    "croniter",
    "email_validator",
    "apprise",
)
HIDE = f"import sys; sys.modules.update(dict.fromkeys({SERVER_LIBRARIES!r}))"


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "statement",
    ["import torale", "from torale import Torale", "import torale.sdk", "import torale.cli"],
)
def test_the_client_loads_no_server_module(statement: str) -> None:
    result = python(f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert not set(SERVER_LIBRARIES) & {name.split(".")[0] for name in loaded}
    ours = [name for name in loaded if name.startswith("torale.")]
    # torale.retry_after is shared with the server and uses the standard library only.
    shared = ("torale.sdk", "torale.cli", "torale.retry_after")
    assert all(name.startswith(shared) for name in ours), ours
    assert "torale.cli.database" not in ours
    # `torale mcp` loads the MCP library when it runs, not with the other commands.
    assert not {"mcp", "mcp_types"} & {name.split(".")[0] for name in loaded}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    run = f"sys.argv = ['torale', *{list(args)!r}]; from torale.cli import main; main()"
    return python(f"{HIDE}; {run}")


def test_the_client_commands_work_without_the_server() -> None:
    listing = cli("--help")
    assert listing.returncode == 0, listing.stderr
    assert "Server (needs: pip install 'torale[server]')" in listing.stdout
    for command in ("serve", "worker", "migrate", "keys", "users", "signin-link", "auth", "task"):
        assert command in listing.stdout
    tasks = cli("task", "--help")
    assert tasks.returncode == 0, tasks.stderr
    assert "create" in tasks.stdout
    unreachable = cli("task", "list")  # the client runs, and reaches for a server
    assert unreachable.returncode == 1
    assert "Traceback" not in unreachable.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "1"],
        ["worker"],
        ["migrate"],
        ["keys", "create", "--email", "a@example.com"],
        ["users", "list"],
        ["users", "promote", "a@example.com"],
        ["users", "demote", "a@example.com"],
        ["signin-link", "--email", "a@example.com"],
    ],
    ids=lambda args: "-".join(a for a in args if not a.startswith("-") and "@" not in a),
)
def test_server_commands_say_what_to_install(args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 1
    command = " ".join(a for a in args if not a.startswith("-") and "@" not in a and a != "1")
    assert f"`torale {command}` needs the server: pip install 'torale[server]'" in result.stderr
    assert "Traceback" not in result.stderr
