"""`torale worker` processes: several share the due runs of one database, and a worker killed
in the middle of a run loses nothing and queues nothing twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.fakes import Delay, FakeOpenAI, FakeWeb, ToolCall, sequence
from tests.fixtures.engine import (  # noqa: F401 - the engine's local fakes, as fixtures here
    MET,
    NOT_MET,
    _fresh_fakes,
    fake_model,
    fake_search,
    fake_web,
    page,
)
from tests.fixtures.processes import clean_env
from torale.auth import service as auth_service
from torale.db import migrate
from torale.db.database import create_engine, create_sessionmaker
from torale.db.models import Delivery, Execution, Task
from torale.executions.lifecycle import ORPHANED
from torale.net import OutboundPolicy
from torale.tasks import service as tasks_service
from torale.tasks.schemas import TaskCreate

POLICY = tasks_service.TaskPolicy(
    min_schedule_seconds=60,
    pages=OutboundPolicy(allowed_networks=(ip_network("127.0.0.1/32"),)),
    notifications=OutboundPolicy(allow_http=False, allowed_networks=(ip_network("127.0.0.1/32"),)),
)

StartWorker = Callable[[dict[str, str], str], subprocess.Popen[bytes]]


pytestmark = pytest.mark.slow  # started first: see tests/conftest.py


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "torale", "worker"], env=env, stdout=log, stderr=log
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def worker_env(tmp_path: Path, url: str, fake_model: FakeOpenAI, **extra: str) -> dict[str, str]:
    return clean_env(
        tmp_path / "data",
        {
            "TORALE_DATABASE_URL": url,
            "TORALE_SECRET_KEY": "worker-test",
            "TORALE_MODEL": "fake-model",
            "TORALE_OPENAI_BASE_URL": fake_model.url + "/v1",
            "TORALE_ALLOWED_NETWORKS": "127.0.0.1/32",
            "TORALE_SCHEDULER_POLL_SECONDS": "0.2",
            "TORALE_RETRY_BACKOFF_SECONDS": "0.05",
            "TORALE_LOG_LEVEL": "warning",
            **extra,
        },
    )


async def seed(url: str, page_url: str, count: int, **task: Any) -> list[uuid.UUID]:
    """A user with `count` tasks reading `page_url`, all due a minute ago."""
    await migrate.upgrade(url)
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await auth_service.create_user(session, email=f"{uuid.uuid4().hex}@x.test")
            ids = []
            for i in range(count):
                data = TaskCreate(
                    search_query=f"query {i}",
                    urls=[page_url],
                    config={"search_provider": "none"},
                    **task,
                )
                created = await tasks_service.create_task(
                    session, user_id=user.id, data=data, policy=POLICY
                )
                ids.append(created.id)
            await session.execute(
                update(Task)
                .where(Task.id.in_(ids))
                .values(next_run=datetime.now(UTC) - timedelta(minutes=1))
            )
            await session.commit()
        return ids
    finally:
        await engine.dispose()


async def poll(url: str, query: Any, until: Callable[[Any], bool], seconds: float) -> Any:
    engine = create_engine(url)
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            async with engine.connect() as conn:
                value = (await conn.execute(query)).all()
            if until(value):
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not reached in {seconds} s: {value!r}"[:500])
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


@pytest.mark.timeout(420)  # 200 runs by two worker processes; slow on a loaded machine
async def test_two_workers_on_postgresql_run_every_due_slot_exactly_once(
    make_postgres_database: Callable[[], str],
    fake_model: FakeOpenAI,
    fake_web: FakeWeb,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    url = await asyncio.to_thread(make_postgres_database)
    fake_web.set_page("/shared", page("Nothing yet."))
    fake_model.script = sequence(NOT_MET)
    ids = await seed(url, fake_web.url + "/shared", 200)
    # Generous time limits: this tests who runs what, not how fast a loaded machine fetches.
    env = worker_env(
        tmp_path,
        url,
        fake_model,
        TORALE_WORKER_CONCURRENCY="10",
        TORALE_FETCH_TIMEOUT_SECONDS="60",
        TORALE_MODEL_TIMEOUT_SECONDS="60",
        TORALE_RUN_TIMEOUT_SECONDS="600",  # one run took over 180 s at load 15
    )
    start_worker(env, "worker-1")
    start_worker(env, "worker-2")

    per_task = (
        select(Execution.task_id, func.count())
        .where(Execution.status.in_(("success", "failed")))
        .group_by(Execution.task_id)
    )
    # 14 s on a quiet machine; 120 s was not enough at a load average of 28.
    await poll(url, per_task, lambda rows: len(rows) == 200, seconds=300)
    await asyncio.sleep(1.0)  # several polls later: nothing ran twice
    rows = await poll(url, per_task, lambda rows: True, seconds=1)
    assert sorted(task_id for task_id, _ in rows) == sorted(ids)
    assert {count for _, count in rows} == {1}
    outcomes = await poll(
        url,
        select(Execution.status, Execution.error_message, func.count()).group_by(
            Execution.status, Execution.error_message
        ),
        bool,
        1,
    )
    assert [(status, count) for status, _, count in outcomes] == [("success", 200)], outcomes
    next_runs = await poll(url, select(Task.next_run).where(Task.id.in_(ids)), bool, 1)
    assert all(when > datetime.now(UTC) for (when,) in next_runs)


async def test_a_worker_killed_mid_run_loses_nothing_and_queues_nothing_twice(
    fake_model: FakeOpenAI, fake_web: FakeWeb, start_worker: StartWorker, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    fake_web.set_page("/crash", page("Announced: September 9."))
    fake_model.script = sequence(Delay(60, then=ToolCall(MET)))
    [task_id] = await seed(
        url,
        fake_web.url + "/crash",
        1,
        notify_behavior="always",
        notifications=[{"type": "email", "address": "alice@example.com"}],
    )
    env = worker_env(tmp_path, url, fake_model, TORALE_RUN_TIMEOUT_SECONDS="4")
    first = start_worker(env, "worker-1")
    running = select(Execution.id, Execution.status)
    await poll(url, running, lambda rows: any(s == "running" for _, s in rows), seconds=30)
    for _ in range(100):  # in the middle of the run: the model has been asked
        if fake_model.calls:
            break
        await asyncio.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    fake_model.script = sequence(MET)
    start_worker(env, "worker-2")
    # The killed run's lease runs out and it is recorded as failed...
    failed = await poll(
        url,
        select(Execution.id, Execution.status, Execution.error_message),
        lambda rows: any(s == "failed" for _, s, _ in rows),
        seconds=30,
    )
    assert [(s, m) for _, s, m in failed] == [("failed", ORPHANED)]
    # ...and the task's next slot still runs.
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(Task).where(Task.id == task_id).values(next_run=datetime.now(UTC))
            )
    finally:
        await engine.dispose()
    rows = await poll(
        url,
        select(Execution.id, Execution.status),
        lambda rows: any(s == "success" for _, s in rows),
        seconds=30,
    )
    succeeded = [execution_id for execution_id, status in rows if status == "success"]
    assert len(succeeded) == 1
    deliveries = await poll(url, select(Delivery.execution_id, Delivery.channel_index), bool, 5)
    assert deliveries == [(succeeded[0], 0)]  # one notification, from the run that finished
