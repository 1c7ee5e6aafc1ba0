"""The operator CLI: `torale migrate`, `torale keys create`, `torale users list/promote/demote`.

Most commands run in-process through typer's CliRunner (settings come from TORALE_* variables,
set with monkeypatch; cwd is the data dir so no stray `.env` is read). A few run as real
`python -m torale` processes, where stdout/stderr separation, exit codes and the absence of a
traceback matter. Keys are checked against the real app (create_app + ASGITransport).
Key-creating commands also run against PostgreSQL (docs/api.md §2, §10).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from tests.fixtures.lifespan import lifespan
from torale.app import create_app
from torale.auth import service as auth_service
from torale.cli import app as cli_app
from torale.config import Settings
from torale.db import migrate
from torale.db.database import create_engine, create_sessionmaker

KEY_RE = re.compile(r"sk_[A-Za-z0-9_-]{43}")
UNREACHABLE_URL = "postgresql://postgres:hunter2@127.0.0.1:1/x"


@dataclass
class Backend:
    name: str
    data_dir: Path
    database_url: str | None  # None: SQLite in the data dir

    def settings(self, **overrides: Any) -> Settings:
        return Settings(
            _env_file=None,
            data_dir=self.data_dir,
            database_url=self.database_url,
            **overrides,
        )


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.chdir(path)
    monkeypatch.setenv("TORALE_DATA_DIR", str(path))
    return path


@pytest.fixture
def sqlite(data_dir: Path) -> Backend:
    return Backend("sqlite", data_dir, None)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(
    request: pytest.FixtureRequest, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    """SQLite in the data dir, then a fresh PostgreSQL database (TORALE_DATABASE_URL)."""
    if request.param == "sqlite":
        return Backend("sqlite", data_dir, None)
    url: str = request.getfixturevalue("make_postgres_database")()
    monkeypatch.setenv("TORALE_DATABASE_URL", url)
    return Backend("postgresql", data_dir, url)


# --- running the CLI ------------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli_app, list(args))


def ok(*args: str) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, (
        f"torale {' '.join(args)} → {result.exit_code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
    )
    return result


def failed(*args: str) -> Result:
    """A command that must exit 1 with a message, not crash."""
    result = invoke(*args)
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def new_key(*args: str) -> str:
    result = ok("keys", "create", *args)
    key = result.stdout.strip()
    assert KEY_RE.fullmatch(key), f"stdout is not just the key: {result.stdout!r}"
    return key


def users_json() -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = json.loads(ok("users", "list", "--json").stdout)
    return users


def one_line(text: str) -> str:
    return " ".join(text.split())


def run_process(
    args: list[str], data_dir: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m torale ARGS` as a real process, with no TORALE_* variable but these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_") and k != "COLUMNS"}
    env["TORALE_DATA_DIR"] = str(data_dir)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "torale", *args],
        env=env,
        cwd=data_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- using a key against the real app -------------------------------------------------------------


def api(
    backend: Backend,
    key: str,
    method: str,
    path: str,
    body: object = None,
    **overrides: Any,
) -> httpx.Response:
    """One request to a freshly started app on the backend's database."""

    async def call() -> httpx.Response:
        app = create_app(backend.settings(**overrides))
        async with lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://torale.test") as c:
                return await c.request(
                    method, path, headers={"Authorization": f"Bearer {key}"}, json=body
                )

    return asyncio.run(call())


def me(backend: Backend, key: str) -> dict[str, Any]:
    response = api(backend, key, "GET", "/auth/me")
    assert response.status_code == 200, response.text
    user: dict[str, Any] = response.json()
    return user


def assert_empty_task_page(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "total": 0, "page": 1, "limit": 20}


# --- torale migrate -------------------------------------------------------------------------------


def test_migrate_prints_the_revision_and_is_idempotent(backend: Backend) -> None:
    head = migrate.head_revision()
    assert head
    first = ok("migrate")
    assert first.stdout == f"Database schema is at revision {head}.\n"
    url = backend.settings().effective_database_url
    assert asyncio.run(migrate.current_revision(url)) == head
    if backend.name == "sqlite":
        assert (backend.data_dir / "torale.db").is_file()

    second = ok("migrate")
    assert second.stdout == first.stdout
    assert asyncio.run(migrate.current_revision(url)) == head


def test_migrate_creates_a_missing_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "not" / "yet" / "there"
    monkeypatch.setenv("TORALE_DATA_DIR", str(data))
    ok("migrate")
    assert (data / "torale.db").is_file()


def test_migrate_ignores_migrate_on_start_false(
    sqlite: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORALE_MIGRATE_ON_START", "false")
    # Other commands refuse an unmigrated database, and say what to run …
    result = failed("keys", "create", "--email", "early@example.com")
    assert "torale migrate" in one_line(result.stderr)
    assert not KEY_RE.search(result.stdout)
    # … and `torale migrate` migrates regardless of the setting.
    assert ok("migrate").stdout == f"Database schema is at revision {migrate.head_revision()}.\n"
    new_key("--email", "early@example.com")


# --- torale keys create ---------------------------------------------------------------------------


def test_keys_create_prints_only_a_working_key(backend: Backend) -> None:
    result = ok("keys", "create", "--email", "Alice@Example.com", "--name", "laptop")
    key = result.stdout.removesuffix("\n")
    assert KEY_RE.fullmatch(key), result.stdout  # stdout is the key alone: KEY=$(torale keys …)
    assert "shown only once" in one_line(result.stderr)
    assert "new user" in one_line(result.stderr)

    assert_empty_task_page(api(backend, key, "GET", "/api/v1/tasks"))
    user = me(backend, key)
    assert user["email"] == "alice@example.com"
    assert user["role"] == "user"
    assert user["is_active"] is True
    listed = api(backend, key, "GET", "/auth/api-keys").json()
    assert listed["total"] == 1
    assert listed["items"][0]["name"] == "laptop"
    assert listed["items"][0]["key_prefix"] == key[:12]
    assert listed["items"][0]["is_active"] is True

    # The key is checked, not just its shape.
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert api(backend, forged, "GET", "/api/v1/tasks").status_code == 401


def test_a_second_key_for_the_same_email_reuses_the_user(backend: Backend) -> None:
    first = new_key("--email", "bob@example.com")
    again = ok("keys", "create", "--email", "BOB@example.com", "--name", "second")
    second = again.stdout.strip()
    assert KEY_RE.fullmatch(second)
    assert second != first
    assert "new user" not in one_line(again.stderr)

    assert me(backend, first)["id"] == me(backend, second)["id"]
    keys = api(backend, first, "GET", "/auth/api-keys").json()
    assert keys["total"] == 2
    assert {k["name"] for k in keys["items"]} == {"cli", "second"}
    assert_empty_task_page(api(backend, second, "GET", "/api/v1/tasks"))

    users = users_json()
    assert [(u["email"], u["api_keys"]) for u in users] == [("bob@example.com", 2)]


def test_admin_flag_makes_a_new_admin_and_promotes_an_existing_user(backend: Backend) -> None:
    made = ok("keys", "create", "--email", "root@example.com", "--admin")
    assert "new admin" in one_line(made.stderr)
    root = made.stdout.strip()
    assert me(backend, root)["role"] == "admin"

    plain = new_key("--email", "carol@example.com")
    assert me(backend, plain)["role"] == "user"

    new_key("--email", "carol@example.com", "--admin")
    assert me(backend, plain)["role"] == "admin"  # the same user, now an admin

    new_key("--email", "root@example.com")  # without --admin: no demotion
    assert me(backend, root)["role"] == "admin"
    assert {u["email"]: u["role"] for u in users_json()} == {
        "root@example.com": "admin",
        "carol@example.com": "admin",
    }


def signed_in(backend: Backend, subject: str, email: str) -> str:
    """An account made by a sign-in through the identity provider; its id."""

    async def make() -> str:
        engine = create_engine(backend.settings().effective_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                claims = {"sub": subject, "email": email, "email_verified": True}
                user, _ = await auth_service.sync_user_from_claims(session, claims=claims)
                await session.commit()
                return str(user.id)
        finally:
            await engine.dispose()

    ok("migrate")
    return asyncio.run(make())


def test_an_email_from_a_sign_in_is_not_enough_to_get_a_key_or_admin(backend: Backend) -> None:
    # Someone signed in through the identity provider with the boss's address.
    squatter = signed_in(backend, "user_squat", "boss@example.com")
    for args in (
        ["keys", "create", "--email", "Boss@example.com", "--admin"],
        ["users", "promote", "boss@example.com"],
    ):
        refused = one_line(failed(*args).stderr)
        assert "signs in through the identity provider (subject user_squat)" in refused
        assert f"--user-id {squatter}" in refused
    assert [(u["id"], u["role"], u["api_keys"]) for u in users_json()] == [(squatter, "user", 0)]

    # Named by id (after checking who it is), it works, and says whom it was for.
    made = ok("keys", "create", "--user-id", squatter, "--admin")
    assert f"boss@example.com (id {squatter})" in one_line(made.stderr)
    assert me(backend, made.stdout.strip())["role"] == "admin"
    assert "is now a user" in ok("users", "demote", "--user-id", squatter).stdout
    assert "is now an admin" in ok("users", "promote", "--user-id", squatter).stdout


def test_user_id_mistakes_are_clear(sqlite: Backend) -> None:
    key = new_key("--email", "ida@example.com")
    ida = me(sqlite, key)["id"]
    other = "00000000-0000-0000-0000-000000000001"
    assert f"No user with id {other}" in failed("keys", "create", "--user-id", other).stderr
    assert "is not a user id" in one_line(failed("keys", "create", "--user-id", "nope").stderr)
    mismatch = failed("keys", "create", "--user-id", ida, "--email", "x@example.com")
    assert "has email ida@example.com, not x@example.com" in one_line(mismatch.stderr)
    assert invoke("keys", "create").exit_code == 2


def test_keys_and_server_share_the_generated_secret_or_the_configured_one(
    sqlite: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    generated = new_key("--email", "dora@example.com")
    secret_file = sqlite.data_dir / "secret_key"
    assert secret_file.is_file()
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert api(sqlite, generated, "GET", "/api/v1/tasks").status_code == 200

    monkeypatch.setenv("TORALE_SECRET_KEY", "shared-between-hosts")
    configured = new_key("--email", "dora@example.com")
    ok_status = api(sqlite, configured, "GET", "/api/v1/tasks", secret_key="shared-between-hosts")
    assert ok_status.status_code == 200
    # A server hashing with another secret (here: the generated one) does not accept it.
    monkeypatch.delenv("TORALE_SECRET_KEY")
    assert api(sqlite, configured, "GET", "/api/v1/tasks").status_code == 401


def test_keys_create_as_a_real_process(data_dir: Path) -> None:
    result = run_process(["keys", "create", "--email", "eve@example.com"], data_dir)
    assert result.returncode == 0, result.stderr
    assert KEY_RE.fullmatch(result.stdout.removesuffix("\n")), result.stdout
    assert "shown only once" in one_line(result.stderr)
    listed = run_process(["users", "list", "--json"], data_dir)
    assert listed.returncode == 0, listed.stderr
    assert [u["email"] for u in json.loads(listed.stdout)] == ["eve@example.com"]


# --- torale users list ----------------------------------------------------------------------------


def test_users_list_json_counts_active_keys_and_tasks(backend: Backend) -> None:
    assert users_json() == []  # migrates an empty database, lists nobody

    alice = new_key("--email", "alice@example.com")
    spare = new_key("--email", "alice@example.com", "--name", "spare")
    bob = new_key("--email", "bob@example.com", "--admin")
    for query in ("first", "second"):
        # Pages watched for changes: this server has no model.
        body = {"urls": [f"https://example.com/{query}"]}
        created = api(backend, alice, "POST", "/api/v1/tasks", body)
        assert created.status_code in (200, 201), created.text
    keys = api(backend, spare, "GET", "/auth/api-keys").json()["items"]
    (spare_id,) = [k["id"] for k in keys if k["name"] == "spare"]
    revoked = api(backend, alice, "DELETE", f"/auth/api-keys/{spare_id}")
    assert revoked.status_code == 200, revoked.text

    users = users_json()
    assert [u["email"] for u in users] == ["alice@example.com", "bob@example.com"]
    by_email = {u["email"]: u for u in users}
    assert by_email["alice@example.com"]["api_keys"] == 1  # the revoked key is not counted
    assert by_email["alice@example.com"]["tasks"] == 2
    assert by_email["alice@example.com"]["role"] == "user"
    assert by_email["bob@example.com"]["api_keys"] == 1
    assert by_email["bob@example.com"]["tasks"] == 0
    assert by_email["bob@example.com"]["role"] == "admin"
    for user in users:
        assert set(user) == {"id", "email", "role", "is_active", "api_keys", "tasks", "created_at"}
        assert user["is_active"] is True
        assert datetime.fromisoformat(user["created_at"]).utcoffset() is not None
    assert by_email["alice@example.com"]["id"] == me(backend, alice)["id"]
    assert by_email["bob@example.com"]["id"] == me(backend, bob)["id"]


def test_users_list_table_shows_whole_emails_and_ids(data_dir: Path) -> None:
    """The table an operator reads (or pipes to grep) must not cut what they need to copy."""
    created = run_process(["keys", "create", "--email", "frank.operator@example.com"], data_dir)
    assert created.returncode == 0, created.stderr
    as_json = run_process(["users", "list", "--json"], data_dir)
    (user,) = json.loads(as_json.stdout)

    table = run_process(["users", "list"], data_dir)  # stdout is a pipe: 80 columns
    assert table.returncode == 0, table.stderr
    assert "frank.operator@example.com" in table.stdout, table.stdout
    assert user["id"] in table.stdout, table.stdout

    # A header line names the tab-separated columns, then one user a line.
    header, row = table.stdout.splitlines()
    columns = header.split("\t")
    assert columns == ["email", "role", "active", "keys", "tasks", "created", "id"]
    values = dict(zip(columns, row.split("\t"), strict=True))
    assert values["email"] == "frank.operator@example.com"
    assert values["id"] == user["id"]
    assert values["role"] == "user"


# --- a new database is announced ------------------------------------------------------------------


def test_an_operator_command_on_a_new_database_says_where_it_is(backend: Backend) -> None:
    """Run without the server's TORALE_DATA_DIR, an operator command would quietly work on a
    database of its own: it says (on stderr) that the database is new, and where."""
    first = ok("users", "list", "--json")
    assert json.loads(first.stdout) == []  # stdout stays what scripts read
    said = one_line(first.stderr)
    assert "New database" in said
    assert "TORALE_DATA_DIR" in said
    if backend.name == "sqlite":
        assert str(backend.data_dir / "torale.db") in said
    else:
        assert backend.database_url
        assert backend.database_url.rsplit("/", 1)[1] in said  # the database's name
    again = ok("users", "list", "--json")
    assert "New database" not in again.stderr
    key = ok("keys", "create", "--email", "later@example.com")
    assert "New database" not in key.stderr


def test_keys_create_on_a_new_database_still_prints_only_the_key(data_dir: Path) -> None:
    result = run_process(["keys", "create", "--email", "first@example.com"], data_dir)
    assert result.returncode == 0, result.stderr
    assert KEY_RE.fullmatch(result.stdout.strip()), result.stdout
    assert "New database" in result.stderr
    assert str(data_dir / "torale.db") in one_line(result.stderr)


# --- torale users promote / demote ----------------------------------------------------------------


def test_promote_and_demote(sqlite: Backend) -> None:
    key = new_key("--email", "gina@example.com")
    assert me(sqlite, key)["role"] == "user"

    promoted = ok("users", "promote", "Gina@Example.com")  # emails match case-insensitively
    assert "is now an admin" in promoted.stdout
    assert me(sqlite, key)["role"] == "admin"
    assert ok("users", "promote", "gina@example.com").exit_code == 0  # idempotent
    assert [u["role"] for u in users_json()] == ["admin"]

    demoted = ok("users", "demote", "gina@example.com")
    assert "is now a user" in demoted.stdout
    assert me(sqlite, key)["role"] == "user"
    assert [u["role"] for u in users_json()] == ["user"]


@pytest.mark.parametrize("command", ["promote", "demote"])
def test_promote_or_demote_an_unknown_email_exits_1(sqlite: Backend, command: str) -> None:
    new_key("--email", "known@example.com")
    result = failed("users", command, "nobody@example.com")
    assert "No user with email nobody@example.com" in one_line(result.stderr)
    assert "is now" not in result.stdout
    assert [u["role"] for u in users_json()] == ["user"]  # nothing changed


# --- an unreachable database ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["migrate"],
        ["keys", "create", "--email", "x@example.com"],
        ["users", "list", "--json"],
        ["users", "promote", "x@example.com"],
        ["serve", "--port", "1"],
    ],
    ids=["migrate", "keys-create", "users-list", "users-promote", "serve"],
)
def test_an_unreachable_database_is_a_friendly_error(data_dir: Path, args: list[str]) -> None:
    result = run_process(args, data_dir, {"TORALE_DATABASE_URL": UNREACHABLE_URL})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "TORALE_DATABASE_URL" in result.stderr
    assert "127.0.0.1:1/x" in result.stderr  # names the database it tried …
    assert "hunter2" not in result.stderr + result.stdout  # … without its password
    assert "Traceback" not in result.stderr + result.stdout
    assert not KEY_RE.search(result.stdout)


def test_an_unreachable_database_in_process(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORALE_DATABASE_URL", UNREACHABLE_URL)
    result = failed("keys", "create", "--email", "x@example.com")
    assert "TORALE_DATABASE_URL" in result.stderr
    assert result.stdout == ""
    assert not any(data_dir.glob("*.db"))  # no SQLite fallback behind the operator's back


# --- torale signin-link ---------------------------------------------------------------------------


def test_signin_link_for_a_user_and_not_for_a_stranger(sqlite: Backend) -> None:
    new_key("--email", "link@example.com")
    result = ok("signin-link", "--email", "link@example.com")
    link = result.stdout.strip()
    assert re.fullmatch(r"http://localhost:8000/signin\?token=[A-Za-z0-9_-]{43}", link), link
    failed("signin-link", "--email", "nobody@example.com")


def test_signin_link_uses_the_public_url(sqlite: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    new_key("--email", "link@example.com")
    monkeypatch.setenv("TORALE_PUBLIC_URL", "https://torale.example.com")
    link = ok("signin-link", "--email", "link@example.com").stdout.strip()
    assert link.startswith("https://torale.example.com/signin?token=")
