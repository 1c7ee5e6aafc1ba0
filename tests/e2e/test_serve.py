"""`torale serve` as a real process: first-start bootstrap key, restart, shared rate limits.

docs/api.md §2 (bootstrap key on an empty database, shown once), §3 (100/minute per key; with Redis,
several API processes share one budget exactly) and §10 (`torale serve`, `GET /health`).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis

from tests.fixtures.processes import Server, StartServer, run_torale

KEY_RE = re.compile(r"sk_[A-Za-z0-9_-]{43}")
KEY_LINE_RE = re.compile(r"^\s*(sk_[A-Za-z0-9_-]{43})\s*$", re.MULTILINE)
CURL_RE = re.compile(r'^\s*curl -H "Authorization: Bearer (\S+)" (\S+)\s*$', re.MULTILINE)
RATE_LIMIT_BODY = {"detail": "Rate limit exceeded: 100 per 1 minute"}
REQUEST_TIMEOUT = 30.0


pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def get(server: Server, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}{path}", headers=bearer(key), timeout=REQUEST_TIMEOUT)


def assert_task_page(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "total", "page", "limit"}
    assert body["items"] == []
    assert body["total"] == 0
    assert body["page"] == 1
    assert body["limit"] == 20


def bootstrap_key(server: Server) -> str:
    """The one key the first start printed (on its own line and in the curl line)."""
    stdout = server.stdout
    keys: set[str] = set(KEY_RE.findall(stdout))
    assert len(keys) == 1, f"expected exactly one API key on stdout:\n{server.describe()}"
    (key,) = keys
    assert KEY_LINE_RE.findall(stdout) == [key], server.describe()
    return key


def assert_clean_stop(server: Server) -> None:
    """SIGTERM shuts down gracefully (uvicorn re-raises the signal after its shutdown)."""
    assert server.stop() in (0, -signal.SIGTERM), server.describe()
    assert "Application shutdown complete" in server.stderr, server.describe()


def create_key(data_dir: Path, email: str, extra_env: dict[str, str] | None = None) -> str:
    result = run_torale(["keys", "create", "--email", email], data_dir, extra_env)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert KEY_RE.fullmatch(key), result.stdout
    return key


# --- first start, restart --------------------------------------------------------------------


def test_first_start_prints_one_working_key_and_restart_prints_none(
    data_dir: Path, start_server: StartServer
) -> None:
    first = start_server(data_dir)
    key = bootstrap_key(first)
    stdout = first.stdout
    assert "admin@localhost" in stdout
    assert "torale keys create" in stdout  # says how to make more keys

    # The printed curl line holds the key and this server's URL, and works as printed.
    curls = CURL_RE.findall(stdout)
    assert len(curls) == 1, first.describe()
    curl_key, curl_url = curls[0]
    assert curl_key == key
    assert curl_url == f"http://localhost:{first.port}/api/v1/tasks"
    assert_task_page(httpx.get(curl_url, headers=bearer(curl_key), timeout=REQUEST_TIMEOUT))

    assert_the_printed_commands_work_as_printed(first, key, data_dir)

    # No model is configured here: the start says so, what to set, and what works meanwhile.
    warning = " ".join(first.stderr.split())
    assert "no model is configured" in warning, first.describe()
    for setting in ("TORALE_MODEL", "OPENAI_API_KEY", "TORALE_OPENAI_BASE_URL"):
        assert setting in warning
    assert "everything else works" in warning

    assert_task_page(get(first, "/api/v1/tasks", key))
    me = get(first, "/auth/me", key)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "admin@localhost"
    assert me.json()["role"] == "admin"
    unauthenticated = httpx.get(f"{first.base_url}/api/v1/tasks", timeout=REQUEST_TIMEOUT)
    assert unauthenticated.status_code == 401

    assert_clean_stop(first)

    second = start_server(data_dir)
    assert KEY_RE.search(second.stdout) is None, second.describe()
    assert "created the admin user" not in second.stdout
    assert_task_page(get(second, "/api/v1/tasks", key))
    listed = get(second, "/auth/api-keys", key)
    assert listed.status_code == 200, listed.text
    assert [k["key_prefix"] for k in listed.json()["items"]] == [key[:12]]
    assert_clean_stop(second)


def printed_commands(stdout: str) -> list[str]:
    """The indented lines of the banner that run `torale` (its other lines are prose)."""
    return [
        line.strip()
        for line in stdout.splitlines()
        if line.startswith("    ")
        and "torale" in line
        and not line.strip().startswith(("curl", "sk_"))
    ]


def assert_the_printed_commands_work_as_printed(server: Server, key: str, data_dir: Path) -> None:
    """Each command of the banner, run by a shell exactly as printed: from another directory,
    with no TORALE_* variable and no virtualenv on PATH (as in a new terminal after `make
    serve`). The data dir the server was given is in the printed operator command."""
    commands = printed_commands(server.stdout)
    assert len(commands) == 3, server.describe()
    set_key, list_tasks, create_key_command = commands
    elsewhere = data_dir.parent / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    env["PATH"] = "/usr/bin:/bin"
    env["TORALE_CONFIG_FILE"] = str(elsewhere / "config.json")  # not the developer's ~/.torale

    def run(command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            input=stdin,
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done

    assert f"auth set-api-key --api-url http://localhost:{server.port}" in set_key
    assert "admin@localhost" in run(set_key, stdin=key + "\n").stdout  # asks for the key
    assert list_tasks.endswith(" task list")
    run(list_tasks)  # signed in with the saved key: an empty table

    assert "keys create --email you@example.com" in create_key_command
    made = run(create_key_command)
    assert "New database" not in made.stderr  # the server's database, not a new one
    (new_key,) = KEY_RE.findall(made.stdout)
    me = get(server, "/auth/me", new_key)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "you@example.com"


def test_no_bootstrap_key_when_the_cli_made_a_user_first(
    data_dir: Path, start_server: StartServer
) -> None:
    key = create_key(data_dir, "first@example.com")
    server = start_server(data_dir)
    assert KEY_RE.search(server.stdout) is None, server.describe()
    assert_task_page(get(server, "/api/v1/tasks", key))
    me = get(server, "/auth/me", key)
    assert me.json()["email"] == "first@example.com"
    assert me.json()["role"] == "user"


# --- rate limits across two processes --------------------------------------------------------


async def burst(servers: list[Server], key: str, total: int) -> list[httpx.Response]:
    """`total` concurrent GET /api/v1/tasks with one key, alternating between the servers."""
    limits = httpx.Limits(max_connections=total, max_keepalive_connections=total)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT) as client:
        return await asyncio.gather(
            *(
                client.get(
                    f"{servers[i % len(servers)].base_url}/api/v1/tasks", headers=bearer(key)
                )
                for i in range(total)
            )
        )


def remaining(response: httpx.Response) -> int:
    return int(response.headers["X-RateLimit-Remaining"])


def assert_limit_headers(response: httpx.Response, *, started: float) -> None:
    assert response.headers["X-RateLimit-Limit"] == "100"
    reset = int(response.headers["X-RateLimit-Reset"])
    # Unix seconds: the end of the one-minute window that began with the burst.
    assert math.floor(started) + 59 <= reset <= math.ceil(time.time()) + 61


def two_servers(data_dir: Path, start_server: StartServer, env: dict[str, str]) -> list[Server]:
    first = start_server(data_dir, env)  # migrates; healthy before the second starts
    second = start_server(data_dir, env)
    return [first, second]


def api_key_id(data_dir: Path, key: str) -> uuid.UUID:
    with sqlite3.connect(data_dir / "torale.db") as conn:
        row = conn.execute("SELECT id FROM api_keys WHERE key_prefix = ?", (key[:12],)).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


@pytest.mark.redis
async def test_two_processes_share_one_budget_through_redis(
    data_dir: Path, start_server: StartServer, redis_url: str
) -> None:
    key = create_key(data_dir, "burst@example.com")
    key_id = api_key_id(data_dir, key)
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        servers = two_servers(data_dir, start_server, {"TORALE_REDIS_URL": redis_url})
        started = time.time()
        responses = await burst(servers, key, 150)

        statuses = Counter(r.status_code for r in responses)
        assert statuses == {200: 100, 429: 50}, statuses
        ok = [r for r in responses if r.status_code == 200]
        for response in ok:
            assert_limit_headers(response, started=started)
            assert set(response.json()) == {"items", "total", "page", "limit"}
        # One counter: each allowed request saw a distinct count, 1 … 100.
        assert sorted(remaining(r) for r in ok) == list(range(100))

        for response in (r for r in responses if r.status_code == 429):
            assert response.json() == RATE_LIMIT_BODY
            retry_after = int(response.headers["Retry-After"])
            assert 1 <= retry_after <= 61
            assert_limit_headers(response, started=started)
            assert remaining(response) == 0

        # Each process now refuses the key: both see the one shared counter.
        for server in servers:
            late = await asyncio.to_thread(get, server, "/api/v1/tasks", key)
            assert late.status_code == 429
            assert late.json() == RATE_LIMIT_BODY
    finally:
        for name in client.scan_iter(match=f"*{key_id}*"):
            client.delete(name)
        client.close()


async def test_without_redis_each_process_has_its_own_budget(
    data_dir: Path, start_server: StartServer
) -> None:
    """The contrast that makes the Redis test meaningful: memory counters are per process."""
    key = create_key(data_dir, "burst@example.com")
    servers = two_servers(data_dir, start_server, {})
    started = time.time()
    responses = await burst(servers, key, 150)

    assert Counter(r.status_code for r in responses) == {200: 150}
    for server in servers:
        mine = [r for r in responses if r.url.port == server.port]
        assert len(mine) == 75
        for response in mine:
            assert_limit_headers(response, started=started)
        # Each process counted only its own 75 requests.
        assert sorted(remaining(r) for r in mine) == list(range(25, 100))

    # One process alone still enforces its 100: 25 more pass there, then 429.
    more = await burst(servers[:1], key, 30)
    assert Counter(r.status_code for r in more) == {200: 25, 429: 5}
    for response in (r for r in more if r.status_code == 429):
        assert response.json() == RATE_LIMIT_BODY
        assert "Retry-After" in response.headers
