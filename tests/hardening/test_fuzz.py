"""Schemathesis against the live app's /openapi.json, in process, on SQLite.

Every operation gets a bounded number of generated requests (valid and invalid ones), sent with
a real API key; then a stateful run follows the links Schemathesis infers between operations
(create a task → read, change, run, delete it; create a key → revoke it; list users →
deactivate one; …). A response fails the run when it is a 5xx, has a status code its operation
does not document, or does not match the documented schema or content type.

The caller is an admin, so that the admin routes are fuzzed past their 403 too, and its
account stays usable throughout:

* deactivating the caller is refused by the product itself (an admin cannot deactivate
  themselves: 409, documented), so it needs no exclusion;
* revoking the caller's own key would turn every later request into a 401 and end the
  exploration, so a request that targets that key (the stateful run learns key ids from
  `GET /auth/api-keys`) is pointed at a spare key of the same user instead. Revoking the key
  in use is covered by tests/auth and tests/hardening/test_security.py.

Requests choosing the DuckDuckGo search provider, and previews that search nothing, use SearXNG
instead (`keep_search_offline`). Nothing else is excluded. Each stateful scenario starts from the
same data (tables emptied, a fresh caller, another user, a task each), so that what Schemathesis
draws from responses does not depend on what earlier scenarios left behind.

Outbound requests cannot leave the machine: host names do not resolve (the outbound guard's
resolver is replaced), and `ConnectSpy` refuses any connection that is not to loopback; the
engine's search, pages and model are the local fakes. Deterministic (`derandomize`) and
bounded: FUZZ_EXAMPLES examples per operation, STATEFUL_SCENARIOS scenarios of at most
FUZZ_STEPS calls.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import delete, func, select
from starlette.types import Receive, Scope, Send

import torale.net
from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb
from tests.fakes.openai import default_script
from tests.fixtures.engine import drafting
from tests.fixtures.services import TEST_SECRET
from tests.hardening.netguard import ConnectSpy
from torale.app import create_app
from torale.auth import service as auth_service
from torale.config import Settings
from torale.db import migrate
from torale.db.database import session_scope
from torale.db.models import Base, Execution
from torale.state import AppState

Case = schemathesis.Case[APIOperation[Any, Any, Any, Any]]
FUZZ_EXAMPLES = 25
FUZZ_STEPS = 8
STATEFUL_SCENARIOS = 40
RESET_PATH = "/__fuzz__/reset"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SETTINGS = hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)


def _route_table() -> dict[str, Any]:
    """The OpenAPI document, from an app that is built and never started (nothing is opened
    or written: the database URL is never connected to). The fixture checks that the live app
    serves the same document."""
    unused = Path(tempfile.gettempdir()) / "torale-fuzz-never-created"
    app = create_app(
        Settings(
            _env_file=None,
            data_dir=unused,
            database_url=f"sqlite+aiosqlite:///{unused / 'torale.db'}",
            secret_key=TEST_SECRET,
        ),
        scheduler=False,
    )
    return app.openapi()


@dataclass
class Caller:
    user_id: uuid.UUID
    key: str
    key_id: uuid.UUID
    spare_key_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class LiveApp:
    """The ASGI app the generated requests go to; the fixture plugs the live app in.

    `POST /__fuzz__/reset` (answered here, never by Torale) empties the database and seeds it
    again, on the app's own event loop: a fresh admin caller with a spare key, another user,
    and a task of each.
    """

    def __init__(self) -> None:
        self.target: FastAPI | None = None
        self.caller: Caller | None = None
        self._generation = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.target is not None, "the fuzz_target fixture has not started the app"
        if scope["type"] == "lifespan":
            # Schemathesis' clients each run a lifespan, and one ending would close the app's
            # HTTP clients under the next request: the app's lifespan is never run here. With
            # scheduler=False it would only start the key-usage flusher (last_used_at).
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "http" and scope["path"] == RESET_PATH:
            await self._reset()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.target(scope, receive, send)

    async def _reset(self) -> None:
        assert self.target is not None
        state: AppState = self.target.state.torale
        # Runs a scenario started in the background finish first (they are bounded).
        for _ in range(400):
            async with state.sessions() as session:
                running = await session.scalar(
                    select(func.count())
                    .select_from(Execution)
                    .where(Execution.status.in_(["pending", "running"]))
                )
            if not running:
                break
            await asyncio.sleep(0.05)
        n = next(self._generation)
        async with session_scope(state.sessions, state.write_lock) as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
            admin = await auth_service.create_user(
                session, email=f"fuzz-admin-{n}@example.com", role="admin"
            )
            key, raw = await auth_service.create_api_key(
                session, user_id=admin.id, name="fuzz", hashing_key=state.hashing_key
            )
            spare, _ = await auth_service.create_api_key(
                session, user_id=admin.id, name="spare", hashing_key=state.hashing_key
            )
            other = await auth_service.create_user(session, email=f"other-{n}@example.com")
            _, other_raw = await auth_service.create_api_key(
                session, user_id=other.id, name="other", hashing_key=state.hashing_key
            )
        self.caller = Caller(admin.id, raw, key.id, spare.id)
        transport = httpx.ASGITransport(app=self.target)
        async with httpx.AsyncClient(transport=transport, base_url="http://torale.test") as client:
            for secret in (raw, other_raw):
                created = await client.post(
                    "/api/v1/tasks",
                    json={"search_query": "When is the next iPhone release?"},
                    headers={"Authorization": f"Bearer {secret}"},
                )
                assert created.status_code == 200, created.text

    def reset(self) -> Caller:
        """Reset through the app (from the test's thread); the new caller."""
        with asgi.get_client(cast(Any, self)) as client:
            assert client.post(RESET_PATH).status_code == 204
        assert self.caller is not None
        return self.caller


# Loaded at import so that pytest parametrizes one test per operation (Schemathesis' lazy
# `from_fixture` loader does not work with pytest 9.2); the fixture plugs the live app in.
OPENAPI = _route_table()
LIVE = LiveApp()
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.app = LIVE
schema.config.update(base_url=f"http://{asgi.HOST}")


@dataclass
class FuzzTarget:
    spy: ConnectSpy

    @property
    def caller(self) -> Caller:
        """The caller of the data the app holds now (each stateful scenario makes a new one)."""
        assert LIVE.caller is not None
        return LIVE.caller


async def _offline_resolve(host: str, port: int) -> list[str]:
    """The outbound guard's resolver, without DNS: literal addresses only."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        raise OSError(f"{host}: names do not resolve in the fuzz run") from None


@pytest.fixture(scope="module")
def fuzz_target(
    tmp_path_factory: pytest.TempPathFactory,
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
    fake_web: FakeWeb,
) -> Iterator[FuzzTarget]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{directory / 'torale.db'}"
    asyncio.run(migrate.upgrade(url))
    settings = Settings(
        _env_file=None,
        data_dir=directory / "data",
        database_url=url,
        secret_key=TEST_SECRET,
        model="fake-model",
        openai_base_url=fake_model.url + "/v1",
        search_provider="searxng",
        searxng_url=fake_search.url,
        allowed_networks="127.0.0.1/32",
        rate_limits="1000000/minute",
        provider_retries=0,
        fetch_timeout_seconds=2,
        model_timeout_seconds=5,
        run_timeout_seconds=10,
        webhook_timeout_seconds=2,
    )
    LIVE.target = create_app(settings, scheduler=False)
    LOCAL_PAGE["url"] = fake_web.url + "/news"
    with pytest.MonkeyPatch.context() as patch, ConnectSpy().installed() as spy:
        patch.setattr(torale.net, "_resolve", _offline_resolve)
        try:
            live = schemathesis.openapi.from_asgi("/openapi.json", LIVE)
            assert live.raw_schema == OPENAPI, "the live app serves another OpenAPI document"
            LIVE.reset()
            yield FuzzTarget(spy=spy)
        finally:
            asgi.shutdown_lifespans()
            LIVE.target = None


@pytest.fixture(autouse=True)
def _fresh_fakes(fake_model: FakeOpenAI, fake_search: FakeSearxng, fake_web: FakeWeb) -> None:
    """Every search finds a readable page, and a suggestion is a valid draft (replaces the
    package's reset-only fixture)."""
    for fake in (fake_model, fake_search, fake_web):
        fake.reset()
    fake_model.script = drafting(default_script)
    fake_web.set_page(
        "/news", "<html><body><article><p>No date announced yet.</p></article></body></html>"
    )
    fake_search.set_results(None, [(fake_web.url + "/news", "News", "")])


def protect_caller(case: Case, caller: Caller) -> None:
    """Point a revocation of the key in use at the spare key (see the module docstring)."""
    if (
        case.method.upper() == "DELETE"
        and case.path == "/auth/api-keys/{key_id}"
        and str((case.path_parameters or {}).get("key_id")) == str(caller.key_id)
    ):
        assert case.path_parameters is not None
        case.path_parameters["key_id"] = str(caller.spare_key_id)


# The local page previews read instead of public ones (set by the fuzz_target fixture).
LOCAL_PAGE: dict[str, str] = {}


def keep_search_offline(case: Case) -> None:
    """DuckDuckGo is reached by the ddgs library, over the internet, with its own DNS: it has no
    local fake, and this machine no internet, so it would answer a correct 502 (a provider
    failed). Requests that choose it choose the local SearXNG fake instead. So do previews that
    search nothing (`none`): they read only their urls, public pages this machine cannot reach,
    and would answer a correct 502 too (nothing to read)."""
    body: dict[str, Any] | None = case.body if isinstance(case.body, dict) else None
    if body is not None and case.path.endswith("/preview") and isinstance(body.get("urls"), list):
        # A preview reads its urls now: public pages (the examples') are out of reach here and
        # would answer a correct 502. Read the local page instead.
        body["urls"] = [
            {**entry, "url": LOCAL_PAGE["url"]} if isinstance(entry, dict) else LOCAL_PAGE["url"]
            for entry in body["urls"]
            if isinstance(entry, str | dict)
        ]
    config = body.get("config") if body is not None else None
    if not isinstance(config, dict):
        return
    offline = config.get("search_provider") == "duckduckgo" or (
        config.get("search_provider") == "none" and case.path.endswith("/preview")
    )
    if offline:
        config["search_provider"] = "searxng"


def private_attempts(spy: ConnectSpy) -> list[str]:
    """Connections the outbound guard should have refused (public ones are refused by the spy
    alone: they are allowed by the policy, but this machine has no internet)."""
    return [a for a in spy.attempts if not ipaddress.ip_address(a).is_global]


@schema.parametrize()
@SETTINGS
def test_every_operation(case: Case, fuzz_target: FuzzTarget) -> None:
    protect_caller(case, fuzz_target.caller)
    keep_search_offline(case)
    case.call_and_validate(headers=fuzz_target.caller.headers, checks=CHECKS)
    assert private_attempts(fuzz_target.spy) == []


def test_stateful_links(fuzz_target: FuzzTarget) -> None:
    """Scenarios along the inferred links, with valid data only: invalid input is what the
    per-operation run covers; here the point is to reach states (a task that ran, a revoked
    key, a paused task, a deactivated user) that random ids never reach."""
    schema.config.phases.stateful.generation.update(modes=[GenerationMode.POSITIVE])
    base: Any = schema.as_state_machine()

    class Machine(base):  # type: ignore[misc]
        caller: Caller

        def setup(self) -> None:
            self.caller = LIVE.reset()

        def before_call(self, case: Case) -> None:
            protect_caller(case, self.caller)
            keep_search_offline(case)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": self.caller.headers}

        def validate_response(
            self, response: schemathesis.Response, case: Case, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=self.caller.headers)

    Machine.run(
        settings=hypothesis.settings(
            SETTINGS, max_examples=STATEFUL_SCENARIOS, stateful_step_count=FUZZ_STEPS
        )
    )
    assert private_attempts(fuzz_target.spy) == []
