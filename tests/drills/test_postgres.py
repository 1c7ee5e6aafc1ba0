"""Drill: PostgreSQL goes away under traffic, then comes back.

A real `torale serve` (API, embedded scheduler and dispatcher) on a fresh PostgreSQL database,
reached through a TCP proxy of the test's (tests/drills/proxy.py), takes reads and writes from
concurrent clients. Then the database goes away for a few seconds, in one of three ways:

* `closed`: the database refuses connections (`ALTER DATABASE … WITH ALLOW_CONNECTIONS false`)
  and every connection to it is terminated (`pg_terminate_backend`), as in a failover or a
  restart of PostgreSQL;
* `refused`: every connection is reset and connecting is refused, as when its host is down;
* `blackhole`: nothing passes and nothing is closed, as in a network partition.

The README and src/torale/errors.py promise:

* while it is gone, API routes answer 503 `{"detail": "The database is unavailable; try again
  shortly"}` with `Retry-After`, and /health 503 "degraded", promptly — never a 500, never a
  request left hanging;
* a request answered wholly from caches (GET /auth/me, a task or task list cached) may be
  served until the change watch notices the outage and drops the caches: when its connection
  is closed (a moment later under load) or, in a partition, when its keep-alive goes
  unanswered (a few seconds);
* when it is back, the same process serves again (the pool drops closed connections and pings
  idle ones; the first failure on a dead one drops every older connection),
  and its background loops (scheduler, dispatcher) work again;
* a request that failed wrote nothing: a refused create left no task, a refused change is not
  applied, and every write answered 200 is there. The one exception says so: a write whose
  COMMIT was on its way when the database went answers 504 "it may or may not have been saved"
  (not 503, which clients retry), and either outcome is accepted for it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.drills.proxy import TcpProxy
from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver, sequence
from tests.fixtures.drills import (
    DATABASE_UNAVAILABLE,
    OUTCOME_UNKNOWN,
    Exchange,
    Traffic,
    bootstrap_key,
    eventually,
    keep_sending,
)
from tests.fixtures.engine import (  # noqa: F401 - the engine's local fakes, as fixtures here
    MET,
    _fresh_fakes,
    fake_model,
    fake_search,
    fake_web,
    page,
)
from tests.fixtures.processes import Server, StartServer, start_server  # noqa: F401 - a fixture
from torale.db.changes import KEEPALIVE_SECONDS, MARKER_TIMEOUT_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

WORKERS = 6
BEFORE_SECONDS = 1.0
AFTER_SECONDS = 2.0
RECOVERY_SECONDS = 10.0  # from giving the database back to the first request served
DATABASE_TIMEOUT = 1.5  # TORALE_DATABASE_TIMEOUT_SECONDS of the drill's server
ANSWER_WITHIN = 5.0  # no request may take longer than this (/health gives up after 5 s too)
AFTER_TIMEOUT = 30.0  # for one read once the drill is over
# Requests that the key-owner cache and the task caches can answer without the database.
CACHED = ("me", "list", "get")
# How long the database stays away: a blackhole longer than ANSWER_WITHIN, to tell a prompt
# 503 from a request that waits for the network to come back.
OUTAGES = {"closed": 3.0, "refused": 3.0, "blackhole": ANSWER_WITHIN + 3.0}


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture
def postgres_admin(postgres_server: str) -> str:
    """asyncpg's URL of the server's maintenance database."""
    return postgres_server


@pytest.fixture
def drill_database(make_postgres_database: Callable[[], str], postgres_admin: str) -> Iterator[str]:
    """A fresh database (dropped at the end of the session); opened again after the test
    whatever happened, so that the session can drop it."""
    url = make_postgres_database()
    yield url
    asyncio.run(open_database(postgres_admin, database_name(url)))


async def close_database(admin_url: str, name: str) -> int:
    """Refuse new connections to the database and end every open one; how many were ended."""
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        ended = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return len(ended)
    finally:
        await conn.close()


async def open_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    finally:
        await conn.close()


@pytest.fixture
def proxy(postgres_admin: str) -> Iterator[TcpProxy]:
    """A proxy in front of the PostgreSQL server, forwarding until told otherwise."""
    address = urlsplit(postgres_admin)
    with TcpProxy(address.hostname or "127.0.0.1", address.port or 5432) as running:
        yield running


def through(proxy: TcpProxy, url: str) -> str:
    """The database URL with the proxy's address instead of the server's."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{proxy.port}"))


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture
def newsroom(fake_web: FakeWeb, fake_search: FakeSearxng, fake_model: FakeOpenAI) -> str:
    fake_web.set_page("/newsroom", page("Apple announced the iPhone 18 for September 9."))
    url = fake_web.url + "/newsroom"
    fake_search.set_results(None, [(url, "Apple Newsroom", "iPhone news")])
    fake_model.script = sequence(MET)
    return url


@pytest.fixture
def server(
    drill_database: str,
    proxy: TcpProxy,
    start_server: StartServer,
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
    tmp_path: Path,
) -> Server:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return start_server(
        data_dir,
        {
            "TORALE_DATABASE_URL": through(proxy, drill_database),
            "TORALE_SECRET_KEY": "drill-secret",
            "TORALE_RATE_LIMITS": "100000/minute",
            "TORALE_MODEL": "fake-model",
            "TORALE_OPENAI_BASE_URL": fake_model.url + "/v1",
            "TORALE_SEARCH_PROVIDER": "searxng",
            "TORALE_SEARXNG_URL": fake_search.url,
            "TORALE_ALLOWED_NETWORKS": "127.0.0.1/32",
            "TORALE_ALLOW_HTTP_WEBHOOKS": "true",
            "TORALE_SCHEDULER_POLL_SECONDS": "0.2",
            "TORALE_RETRY_BACKOFF_SECONDS": "0.01",
            "TORALE_DELIVERY_RETRY_DELAYS": "0.2,0.5,1,2",
            "TORALE_LOG_LEVEL": "warning",
            # A black-holed database costs a request a ping and a connect attempt, each this long.
            "TORALE_DATABASE_TIMEOUT_SECONDS": str(DATABASE_TIMEOUT),
        },
    )


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    key = bootstrap_key(server.stdout_path)
    async with httpx.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(ANSWER_WITHIN * 2),
        limits=httpx.Limits(max_connections=WORKERS * 2),
    ) as client:
        yield client


def describe(exchanges: list[Exchange], limit: int = 15) -> str:
    return "\n".join(str(e) for e in exchanges[:limit])


@pytest.mark.parametrize("outage", list(OUTAGES))
async def test_requests_answer_503_while_postgres_is_gone_and_succeed_again_after(
    outage: str,
    proxy: TcpProxy,
    server: Server,
    http: httpx.AsyncClient,
    postgres_admin: str,
    drill_database: str,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    name = database_name(drill_database)
    pid = server.proc.pid
    traffic = Traffic(http)
    seeded = []
    for i in range(4):
        made = await traffic.send(
            "seed", "POST", "/api/v1/tasks", json={"search_query": f"seed {i}", "name": f"seed {i}"}
        )
        assert made.status == 200, made
        seeded.append(made.body["id"])

    async def step(worker: int, n: int) -> None:
        tag = f"w{worker}-n{n}-{uuid.uuid4().hex[:6]}"
        task_id = seeded[(worker + n) % len(seeded)]
        match (worker + n) % 6:
            case 0:
                await traffic.send(
                    "create",
                    "POST",
                    "/api/v1/tasks",
                    json={"search_query": f"drill {tag}", "name": f"created {tag}"},
                )
            case 1:
                await traffic.send("list", "GET", "/api/v1/tasks")
            case 2:
                await traffic.send(
                    "patch", "PATCH", f"/api/v1/tasks/{task_id}", json={"name": f"patched {tag}"}
                )
            case 3:
                await traffic.send("me", "GET", "/auth/me")
            case 4:
                await traffic.send("get", "GET", f"/api/v1/tasks/{task_id}")
            case _:
                await traffic.send("health", "GET", "/health")

    stop = asyncio.Event()
    sending = asyncio.create_task(keep_sending(stop, WORKERS, step))
    try:
        await asyncio.sleep(BEFORE_SECONDS)
        closing = time.monotonic()
        if outage == "closed":
            ended = await close_database(postgres_admin, name)
            assert ended > 0, "the server held no connection to the database"
        elif outage == "refused":
            await asyncio.to_thread(proxy.refuse)
        else:
            await asyncio.to_thread(proxy.blackhole)
        closed = time.monotonic()
        await asyncio.sleep(OUTAGES[outage])
        reopening = time.monotonic()
        if outage == "closed":
            await open_database(postgres_admin, name)
        else:
            await asyncio.to_thread(proxy.forward)
        reopened = time.monotonic()

        async def served_again() -> Exchange | None:
            after = [e for e in traffic.exchanges if e.started >= reopened and e.status == 200]
            return after[0] if after else None

        first_ok = await eventually(
            served_again, seconds=RECOVERY_SECONDS, what="a request served after the reopening"
        )
        await asyncio.sleep(AFTER_SECONDS)
    finally:
        stop.set()
        await sending
    assert server.proc.poll() is None, server.describe()  # the same process throughout
    assert server.proc.pid == pid

    everything = traffic.exchanges
    problems: list[str] = []  # every broken promise, reported together

    def check(ok: bool, problem: str, exchanges: list[Exchange] | None = None) -> None:
        if not ok:
            problems.append(problem + (":\n" + describe(exchanges) if exchanges else ""))

    # Never a 500 (nor any status besides 200, 503 and a write's 504), never a hang.
    unexpected = [
        e
        for e in everything
        if e.status not in (200, 503)
        and not (e.status == 504 and e.body == OUTCOME_UNKNOWN and e.op in ("create", "patch"))
    ]
    check(not unexpected, f"answers other than 200/503/504 {traffic.statuses()}", unexpected)
    slow = [e for e in everything if e.ended - e.started > ANSWER_WITHIN]
    check(not slow, f"answers slower than {ANSWER_WITHIN} s", slow)

    # Before: everything served.
    before = traffic.between(0, closing)
    check(bool(before), "no traffic before the outage")
    check(all(e.status == 200 for e in before), "refused before the outage", before)

    # While it was gone: every request 503, in the documented shape.
    gone = traffic.between(closed, reopening)
    check(len(gone) >= WORKERS, f"too little traffic during the outage: {len(gone)}")
    # Who owns a key is cached, exact while the change watch hears PostgreSQL
    # (torale/db/changes.py). The watch drops the cache when its connection is closed (at once,
    # or as soon as a loaded event loop gets to it) or, in a partition, when its keep-alive marker
    # goes unanswered. Until then, a request that needs nothing else (GET /auth/me) is answered
    # from it, whatever kind of outage it is; so is a task list or a task already cached for
    # its owner (the API's fast paths, kept exact by the same watch).
    noticed = closed + KEEPALIVE_SECONDS + MARKER_TIMEOUT_SECONDS + 1.0
    served = [
        e
        for e in gone
        if e.status not in (503, 504) and not (e.op in CACHED and e.started < noticed)
    ]
    check(not served, "answered other than 503 while the database was closed", served)
    misshapen = [
        e
        for e in gone
        if e.status in (503, 504)
        and (
            (e.body.get("status"), e.body.get("database")) != ("degraded", "unavailable")
            if e.op == "health"
            else (
                (e.body, e.headers.get("retry-after")) != (DATABASE_UNAVAILABLE, "5")
                if e.status == 503
                else e.body != OUTCOME_UNKNOWN
            )
        )
    ]
    check(not misshapen, "503s not in the documented shape", misshapen)

    # After: served again by the same process; once served, never refused again (the pool
    # does not hand out a dead connection later).
    after = [e for e in everything if e.started >= first_ok.started]
    refused = [e for e in after if e.status != 200]
    check(
        not refused,
        f"refused after the database was back (first success "
        f"{first_ok.started - reopened:.2f} s after reopening)",
        refused,
    )

    # No partial or lost writes: a failed create left no task, every 200 create is there; a
    # task's name is its own or one a 200 PATCH set.
    tasks: dict[str, Any] = {}
    page, total = 1, 1
    while (page - 1) * 100 < total:
        listed = await http.get("/api/v1/tasks", params={"limit": 100, "page": page})
        assert listed.status_code == 200, listed.text
        body = listed.json()
        total, page = body["total"], page + 1
        tasks |= {t["id"]: t for t in body["items"]}
    check(total == len(tasks), f"total {total} != {len(tasks)} listed")
    queries = {t["search_query"] for t in tasks.values()}
    creates = [e for e in everything if e.op == "create" and e.sent]
    created_ok = {e.sent["search_query"] for e in creates if e.status == 200 and e.sent}
    failed = [e for e in creates if e.status != 200 and e.sent]
    check(bool(failed), "no create was refused during the outage")
    # Only a create whose COMMIT was cut off may have happened, and then it says so.
    refused = [e for e in failed if e.body != OUTCOME_UNKNOWN]
    unknown = {e.sent["search_query"] for e in failed if e.body == OUTCOME_UNKNOWN and e.sent}
    left = [e for e in refused if e.sent and e.sent["search_query"] in queries]
    check(not left, "a create that was refused left a task", left)
    check(created_ok <= queries, f"creates answered 200 left no task: {created_ok - queries}")
    check(
        len(tasks) - len(queries & unknown) == len(seeded) + len(created_ok),
        f"{len(tasks)} tasks, {len(seeded)} seeded, {len(created_ok)} created, "
        f"{len(queries & unknown)} of uncertain outcome",
    )
    for number, task_id in enumerate(seeded):
        patches = [e for e in everything if e.op == "patch" and e.path.endswith(task_id)]
        allowed = {f"seed {number}"} | {
            e.sent["name"]
            for e in patches
            if e.sent and (e.status == 200 or e.body == OUTCOME_UNKNOWN)
        }
        if task_id not in tasks:
            check(False, f"seeded task {task_id} is not listed")
            continue
        check(
            tasks[task_id]["name"] in allowed,
            f"task {task_id} is named {tasks[task_id]['name']!r}, which no successful PATCH set",
        )
        one = await http.get(f"/api/v1/tasks/{task_id}")
        check(one.json()["name"] == tasks[task_id]["name"], "the task list is stale")
    assert not problems, "\n\n".join(problems)

    # The process's background loops survived: a task due now is run by the embedded scheduler
    # and its notification sent by the dispatcher.
    due = await http.post(
        "/api/v1/tasks",
        json={
            "search_query": "When is the next iPhone release?",
            "run_immediately": True,
            "notify_behavior": "always",
            "notifications": [{"type": "webhook", "url": receiver.url_for("/after")}],
        },
    )
    assert due.status_code == 200, due.text
    task_id = due.json()["id"]

    async def ran() -> dict[str, Any] | None:
        asked = time.monotonic()
        try:
            # Liveness, not latency (ANSWER_WITHIN held during the drill): on a loaded machine
            # this read competes with the run it asks about.
            answer = await http.get(f"/api/v1/tasks/{task_id}/executions", timeout=AFTER_TIMEOUT)
        except httpx.TimeoutException as exc:
            waited = time.monotonic() - asked
            raise AssertionError(
                f"the history did not answer within {waited:.1f} s after the drill "
                f"({exc!r}):\n{server.describe()}"
            ) from exc
        listing = answer.json()["items"]
        done = [e for e in listing if e["status"] in ("success", "failed")]
        return done[0] if done else None

    execution = await eventually(ran, seconds=45, what="the scheduler ran the task due now")
    assert execution["status"] == "success", execution
    [delivered] = await receiver.wait_for(1, timeout=AFTER_TIMEOUT)
    assert delivered.event["data"]["execution"]["id"] == execution["id"]
    health = await http.get("/health")
    assert health.status_code == 200, health.text
    assert "unhandled error" not in server.stderr, server.stderr[-3000:]
