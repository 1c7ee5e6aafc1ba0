"""Shared fixtures: databases (SQLite and PostgreSQL), the app, users with keys, services.

Every test that takes `client` (or `database_url`) runs once per database. PostgreSQL and Redis
tests skip with a reason when the service is absent, and fail instead when CI=true.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import delete

from tests.fixtures.lifespan import lifespan
from tests.fixtures.services import (
    IN_CI,
    POSTGRES_ADMIN_URL,
    REDIS_URL,
    TEST_SECRET,
    require_service,
)
from tests.fixtures.users import ApiUser, create_test_user
from torale.app import create_app
from torale.config import Settings
from torale.db import migrate
from torale.db.models import Base
from torale.state import AppState

# Tests never read the developer's own configuration.
for _name in [n for n in os.environ if n.startswith("TORALE_") and not n.startswith("TORALE_TEST")]:
    del os.environ[_name]
# The CLI's rich consoles read COLUMNS once, when first imported: make it the same in every
# process (pytest-xdist workers have no terminal), whichever test imports them first.
os.environ["COLUMNS"] = "200"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs PostgreSQL")
    config.addinivalue_line("markers", "redis: needs Redis")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort: the rest keep pytest's order, grouped by database).

    pytest-xdist hands tests out in this order, so the long ones start while there is still
    plenty of short work for the other process, instead of one process running a 30 s drill
    at the end while the other waits for it.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


_ci_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if IN_CI and report.skipped:
        _ci_skips.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ci_skips:
        print(f"\nCI=true: {len(_ci_skips)} test(s) were skipped, which fails the run:")
        for nodeid in _ci_skips:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- PostgreSQL ---------------------------------------------------------------------------


async def _pg_execute(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _postgres_problem() -> str | None:
    try:
        asyncio.run(_pg_execute("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{POSTGRES_ADMIN_URL}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server."""
    problem = _postgres_problem()
    if problem:
        require_service("PostgreSQL", problem)
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def make_postgres_database(postgres_server: str) -> Iterator[Any]:
    """Factory: a fresh, empty PostgreSQL database (dropped at the end); returns its URL."""
    made: list[str] = []

    def make() -> str:
        name = f"torale_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
        made.append(name)
        base = postgres_server.rsplit("/", 1)[0]
        return f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)

    yield make
    for name in made:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- the database every app test runs against ------------------------------------------


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database: SQLite file, then PostgreSQL. Tables are emptied per test."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'torale.db'}"
    else:
        url = request.getfixturevalue("make_postgres_database")()
    asyncio.run(migrate.upgrade(url))
    return url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a module or with indirect parametrisation to change settings for a test."""
    return {}


# The server of most tests has a model, so that tasks given only a search query are model tasks
# (without one they would be refused: docs/api.md §4). Tests of the zero-key server override it
# with {"model": None}.
TEST_MODEL = "openai:gpt-4o-mini"


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        **{"model": TEST_MODEL, **settings_overrides},
    )


async def _empty_tables(state: AppState) -> None:
    async with state.database.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(delete(table))


@pytest.fixture
def run_scheduler() -> bool:
    """Whether the app dispatches scheduled runs; scheduling tests turn it on."""
    return False


@pytest.fixture
async def app(settings: Settings, run_scheduler: bool) -> AsyncIterator[FastAPI]:
    application = create_app(settings, scheduler=run_scheduler)
    async with lifespan(application):
        await _empty_tables(application.state.torale)
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://torale.test") as c:
        yield c


# --- users ------------------------------------------------------------------------------


@pytest.fixture
async def alice(app: FastAPI) -> ApiUser:
    return await create_test_user(app, "alice@example.com")


@pytest.fixture
async def bob(app: FastAPI) -> ApiUser:
    return await create_test_user(app, "bob@example.com")


# --- Redis ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        require_service("Redis", f"{REDIS_URL}: {exc}")
    return REDIS_URL
