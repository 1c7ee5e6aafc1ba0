"""Watching pages: CPU per check, checks per second of one worker, snapshot storage.

Run it as `.venv/bin/python bench/watch.py` (or `make bench-watch`). Pages of 50-200 KB
(`bench/watch_pages.py`: shop pages with a large inline state, navigation, reviews, related
products, and noise — session ids, tokens, times — outside the product) are served by a process
of their own, and so is the local fake model (`tests/fakes`), so that neither's CPU counts with
the checks'. CPU is process CPU time (user + system), never wall time: the machine may be
shared. See bench/README.md; results go to the watch section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import datetime as dt
import io
import json
import logging
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))  # for the local fakes in tests/fakes

from sqlalchemy import event, func, select, update  # noqa: E402

from common import (  # noqa: E402
    RESULTS_FILE,
    Machine,
    cpu_ticks,
    free_port,
    section_markers,
    write_section,
)
from common import environment as common_environment  # noqa: E402
from torale.auth.service import create_user  # noqa: E402
from torale.config import Settings  # noqa: E402
from torale.db.database import (  # noqa: E402
    create_engine,
    create_sessionmaker,
    reading,
    session_scope,
)
from torale.db.migrate import upgrade  # noqa: E402
from torale.db.models import Execution, ExecutionSource, SnapshotContent, Task  # noqa: E402
from torale.engine.fetch import CachedPage, FetchedPage, extract_text  # noqa: E402
from torale.engine.run import Engine, run_execution  # noqa: E402
from torale.statuses import Trigger  # noqa: E402
from torale.tasks.schemas import TaskCreate  # noqa: E402
from torale.tasks.service import TaskPolicy, create_task  # noqa: E402
from torale.watch.judge import judge_change  # noqa: E402
from torale.watch.snapshots import Snapshot  # noqa: E402
from torale.watch.targets import Target  # noqa: E402

WORK_DIR = BENCH_DIR / ".work" / "watch"
SECTION_START, SECTION_END = section_markers("watch")
MODEL = "fake-model"
SELECTOR = "#offer"
SCENARIOS = ("static", "same", "noise", "text")
SCENARIO_NAMES = {
    "static": "unchanged, answered 304",
    "same": "200, the same bytes",
    "noise": "200, only noise changed",
    "text": "200, the text changed",
}
SIZES = (50, 100, 200)
GOALS_MS = {"static": 2.0, "same": 8.0, "noise": 30.0, "text": 30.0}  # per 100 KB page
KINDS = ("selector", "page")
KIND_NAMES = {"selector": f"selector `{SELECTOR}`", "page": "whole page (readable text)"}
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
PACKAGES = ("trafilatura", "lxml", "parsel", "httpx", "sqlalchemy", "aiosqlite", "pydantic-ai-slim")
VERDICT = {
    "answer": "The espresso machine costs more than 50 €.",
    "condition_met": False,
    "current_state": {"below_50": False},
    "reasoning": "The product page gives the price.",
    "confidence": 0.9,
    "sources": [],
}


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# The processes around the checks: pages, the fake model, a worker
# --------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=20)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({proc.returncode})")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def start_pages() -> Proc:
    port = free_port()
    log_file = (WORK_DIR / "pages.log").open("wb")
    popen = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "watch_pages.py"), str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/stats", popen)
    return Proc("pages", popen, url)


def serve_model(port: int) -> None:
    """The fake model's process (`bench/watch.py --serve-model PORT`): one fixed verdict."""
    from tests.fakes import FakeOpenAI, ToolCall

    with FakeOpenAI(lambda request: ToolCall(VERDICT), models=(MODEL,), port=port):
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


def start_model() -> Proc:
    port = free_port()
    log_file = (WORK_DIR / "model.log").open("wb")
    popen = subprocess.Popen(
        [sys.executable, __file__, "--serve-model", str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models", popen)
    return Proc("model", popen, url)


def page_stats(pages: Proc) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(pages.url + "/stats", timeout=10).json()
    return stats


def settings_for(data_dir: Path, model: Proc) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir / 'torale.db'}",
        secret_key="bench-watch",  # noqa: S106 (a throwaway database)
        model=MODEL,
        openai_base_url=model.url + "/v1",
        search_provider="none",
        allowed_networks="127.0.0.1/32",
        provider_retries=1,
        fetch_timeout_seconds=20,
        model_timeout_seconds=30,
        run_timeout_seconds=120,
        log_level="warning",
    )


def fresh_dir(name: str) -> Path:
    path = WORK_DIR / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def task_body(url: str, *, kind: str, mode: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "urls": [{"url": url, "selector": SELECTOR} if kind == "selector" else url],
        "mode": mode,
        "schedule": "0 0 1 1 *",  # never due unless made due
        "timezone": "UTC",
        "notify_behavior": "always",
    }
    if mode == "model":
        body["search_query"] = "Barista espresso machine price"
        body["condition_description"] = "The espresso machine costs less than 50 €"
        body["config"] = {"search_provider": "none"}
    return body


async def create_tasks(settings: Settings, bodies: list[dict[str, Any]]) -> list[uuid.UUID]:
    url = settings.database_url
    assert url is not None
    await upgrade(url)
    db = create_engine(url)
    sessions = create_sessionmaker(db)
    policy = TaskPolicy.from_settings(settings)
    ids = []
    try:
        async with session_scope(sessions) as session:
            user = await create_user(session, email="bench@example.com")
            for body in bodies:
                task = await create_task(
                    session, user_id=user.id, data=TaskCreate.model_validate(body), policy=policy
                )
                ids.append(task.id)
    finally:
        await db.dispose()
    return ids


# --------------------------------------------------------------------------------------------
# Part 1: CPU per check, in this process (the pages and the model are other processes)
# --------------------------------------------------------------------------------------------


@dataclass
class Group:
    kind: str
    mode: str
    scenario: str
    kb: int
    tasks: list[uuid.UUID] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    run_ms: list[float] = field(default_factory=list)  # per round: CPU per check, whole run
    page_ms: list[float] = field(default_factory=list)  # per round: CPU per check, page path
    statements: int = 0  # SQL statements of one check (its first task, last round)
    units: int = 0  # units of work (transactions, and reads on the reading engine) of it

    @property
    def name(self) -> str:
        return f"{self.mode}-{self.kind}-{self.scenario}-{self.kb}"


def cached_from(page: FetchedPage) -> CachedPage:
    """The page cache's entry for a page just read (what the record step stores)."""
    names = [f.name for f in dataclasses.fields(CachedPage)]
    return CachedPage(**{name: getattr(page, name) for name in names})


class DbCount:
    """SQL statements and units of work (BEGINs) on an engine and its `reading` engine, while on."""

    def __init__(self, db: Any) -> None:
        self.on = False
        self.statements = 0
        self.units = 0
        for engine in {db.sync_engine, reading(db).sync_engine}:
            event.listen(engine, "before_cursor_execute", self._statement)
            event.listen(engine, "begin", self._begin)

    def _statement(self, *args: Any) -> None:
        self.statements += self.on

    def _begin(self, *args: Any) -> None:
        self.units += self.on


@dataclass
class Floor:
    """CPU of the least a run's record can be: one unit of work with one UPDATE of the
    execution row (`session_scope`, SQLAlchemy, `sqlite3` inline), and the same on sqlite3."""

    one_update_ms: float
    per_statement_ms: float
    sqlite3_ms: float


async def measure_floor(
    sessions: Any,
    lock: asyncio.Lock | None,
    execution_id: uuid.UUID,
    path: Path,
    repeats: int = 400,
) -> Floor:
    async def unit(statements: int) -> None:
        async with session_scope(sessions, lock) as session:
            for i in range(statements):
                await session.execute(
                    update(Execution)
                    .where(Execution.id == execution_id)
                    .values(usage={"llm_calls": i})
                )

    results = []
    for statements in (1, 5):
        await unit(statements)
        started = time.process_time()
        for _ in range(repeats):
            await unit(statements)
        results.append((time.process_time() - started) * 1000 / repeats)
    import sqlite3

    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
    started = time.process_time()
    for i in range(repeats):
        connection.execute("BEGIN")
        connection.execute(
            "UPDATE executions SET usage = ? WHERE id = ?",
            (json.dumps({"llm_calls": i}), execution_id.hex),
        )
        connection.execute("COMMIT")
    raw = (time.process_time() - started) * 1000 / repeats
    connection.close()
    return Floor(results[0], (results[1] - results[0]) / 4, raw)


async def page_path_round(
    engine: Engine, group: Group, cache: dict[str, CachedPage], previous: dict[str, str]
) -> None:
    """What a change check does besides its database work: read each target (conditionally,
    with the cache entry of the last read), extract or select, compare with the last text."""
    selector = SELECTOR if group.kind == "selector" else None
    for url in group.urls:
        target = Target(url, selector)
        page = await engine.fetcher.fetch(url, cache.get(target.key), selector=selector)
        judge_change([Snapshot(target, page.title, page.text)], previous, None)
        cache[target.key] = cached_from(page)
        previous[target.key] = page.text


async def per_check(
    pages: Proc, model: Proc, *, per_group: int, rounds: int, profile: bool
) -> tuple[list[Group], list[str], float, Floor]:
    data_dir = fresh_dir("checks")
    settings = settings_for(data_dir, model)
    groups: list[Group] = []
    for mode in ("change", "model"):
        for kind in KINDS:
            for kb in (50, 100, 200) if mode == "change" else (100,):
                for scenario in SCENARIOS:
                    groups.append(Group(kind, mode, scenario, kb))
    bodies = []
    n = 0
    for group in groups:
        for _ in range(per_group):
            url = f"{pages.url}/{group.scenario}/{group.kb}/{n}"
            group.urls.append(url)
            bodies.append(task_body(url, kind=group.kind, mode=group.mode, name=f"{group.name}"))
            n += 1
    ids = await create_tasks(settings, bodies)
    for group in groups:
        group.tasks, ids = ids[: len(group.urls)], ids[len(group.urls) :]

    db = create_engine(settings.database_url or "")
    sessions = create_sessionmaker(db)
    engine = Engine.build(settings, sessions, asyncio.Lock())
    count = DbCount(db)
    failures: list[str] = []
    caches: dict[str, tuple[dict[str, CachedPage], dict[str, str]]] = {}
    profiler = cProfile.Profile() if profile else None
    machine = Machine().start()
    try:
        for round_ in range(rounds + 1):  # round 0: the first check of each task (a baseline)
            for group in groups:
                started = time.process_time()
                for n, task_id in enumerate(group.tasks):
                    count.on = round_ == rounds and n == 0
                    await run_execution(engine, task_id, Trigger.SCHEDULE)
                    if count.on:
                        count.on = False
                        group.statements, group.units = count.statements, count.units
                        count.statements = count.units = 0
                if round_:
                    spent = time.process_time() - started
                    group.run_ms.append(spent * 1000 / len(group.tasks))
                if group.mode != "change":
                    continue
                cache, previous = caches.setdefault(group.name, ({}, {}))
                if profiler and round_ and group.kb == 100:
                    profiler.enable()
                started = time.process_time()
                await page_path_round(engine, group, cache, previous)
                if round_:
                    spent = time.process_time() - started
                    group.page_ms.append(spent * 1000 / len(group.urls))
                if profiler:
                    profiler.disable()
            log(f"  round {round_} of {rounds} done")
        busy = machine.read()
        async with sessions() as session:
            for group in groups:
                rows = (
                    await session.execute(
                        select(Execution.status, Execution.condition_met, Execution.usage)
                        .where(Execution.task_id.in_(group.tasks))
                        .order_by(Execution.created_at)
                    )
                ).all()
                failures += check_runs(group, rows, rounds)
        # After the checks are verified: the floor's UPDATEs overwrite one run's usage.
        async with sessions() as session:
            any_run = await session.scalar(select(Execution.id).limit(1))
        assert any_run is not None
        floor = await measure_floor(sessions, engine.write_lock, any_run, data_dir / "torale.db")
    finally:
        await engine.close()
        await db.dispose()
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        (WORK_DIR / "profile-page-path.txt").write_text(out.getvalue())
        log(f"profile of the 100 KB page paths: {WORK_DIR / 'profile-page-path.txt'}")
    return groups, failures, busy, floor


def check_runs(group: Group, rows: Sequence[Any], rounds: int) -> list[str]:
    """Every check succeeded and decided as its scenario says."""
    problems = []
    if len(rows) != len(group.tasks) * (rounds + 1):
        problems.append(f"{group.name}: {len(rows)} runs recorded")
    failed = [row for row in rows if row.status != "success"]
    if failed:
        problems.append(f"{group.name}: {len(failed)} runs failed")
    later = rows[len(group.tasks) :]  # after the baseline round (runs were made in order)
    if group.mode == "change":
        met = sum(bool(row.condition_met) for row in later)
        expected = len(later) if group.scenario == "text" else 0
        if met != expected:
            problems.append(f"{group.name}: {met} of {len(later)} checks saw a change")
    if group.scenario == "static":
        not_modified = sum(row.usage.get("pages_not_modified", 0) for row in later)
        if not_modified != len(later):
            problems.append(f"{group.name}: {not_modified} of {len(later)} reads answered 304")
    return problems


@dataclass
class Extraction:
    """ms to extract one page's readable text (median): `extract_text` now; trafilatura's full
    extraction with its metadata (what a check paid before the title was read alone); and
    `extract_text`'s call with `fast=True` (no readability/justext fallback, teasers kept:
    not used, measured for the record), with whether it gave the same text on these pages."""

    now: float
    before: float
    fast: float
    fast_same: bool


def extraction_baseline(pages: Proc, repeats: int) -> dict[int, Extraction]:
    """`Extraction` by page size, interleaved, median of `repeats` (noise pages: every body
    differs from the last)."""
    import trafilatura

    def fast(body: bytes) -> str:
        tree = trafilatura.load_html(body)
        document = trafilatura.bare_extraction(
            tree, url="https://shop.example.com/", with_metadata=False,
            include_comments=False, include_tables=True, fast=True,
        )  # fmt: skip
        return str(getattr(document, "text", "") or "")

    results = {}
    for kb in SIZES:
        now: list[float] = []
        before: list[float] = []
        quick: list[float] = []
        same = True
        for _ in range(repeats + 1):
            body = httpx.get(f"{pages.url}/noise/{kb}/0", timeout=30).content
            started = time.process_time()
            _, text = extract_text(body, "text/html; charset=utf-8", "https://shop.example.com/")
            now.append((time.process_time() - started) * 1000)
            started = time.process_time()
            trafilatura.bare_extraction(
                body, url="https://shop.example.com/", with_metadata=True,
                include_comments=False, include_tables=True,
            )  # fmt: skip
            before.append((time.process_time() - started) * 1000)
            started = time.process_time()
            same = same and fast(body) == text
            quick.append((time.process_time() - started) * 1000)
        results[kb] = Extraction(_median(now[1:]), _median(before[1:]), _median(quick[1:]), same)
    return results


# --------------------------------------------------------------------------------------------
# Part 2: one `torale worker` process and N tasks
# --------------------------------------------------------------------------------------------


@dataclass
class WorkerRound:
    mode: str
    scenario: str
    checks: int
    cpu_ms: float  # the worker's CPU per check
    wall: float  # seconds from making the tasks due to the last finished check
    failed: int
    met: int
    not_modified: int
    model_calls: int
    machine: float  # CPUs busy on the whole machine meanwhile


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    env.update(
        {
            "TORALE_DATA_DIR": str(settings.data_dir),
            "TORALE_DATABASE_URL": settings.database_url or "",
            "TORALE_SECRET_KEY": "bench-watch",
            "TORALE_MODEL": MODEL,
            "TORALE_OPENAI_BASE_URL": settings.openai_base_url or "",
            "TORALE_SEARCH_PROVIDER": "none",
            "TORALE_ALLOWED_NETWORKS": "127.0.0.1/32",
            "TORALE_LOG_LEVEL": "warning",
            "TORALE_RUN_TIMEOUT_SECONDS": "120",
            "TORALE_FETCH_TIMEOUT_SECONDS": "20",
        }
    )
    return env


async def worker_round(
    sessions: Any, worker: subprocess.Popen[bytes], ids: list[uuid.UUID], mode: str, scenario: str
) -> WorkerRound:
    armed = dt.datetime.now(dt.UTC)
    machine = Machine().start()
    before = cpu_ticks(worker.pid)
    async with session_scope(sessions) as session:
        await session.execute(
            update(Task).where(Task.id.in_(ids)).values(next_run=armed - dt.timedelta(seconds=1))
        )
    done = 0
    deadline = time.monotonic() + 3600
    while done < len(ids):
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{done} of {len(ids)} checks in an hour")
        await asyncio.sleep(0.5)
        async with sessions() as session:
            done = int(
                await session.scalar(
                    select(func.count())
                    .select_from(Execution)
                    .where(
                        Execution.task_id.in_(ids),
                        Execution.created_at >= armed,
                        Execution.status.in_(["success", "failed"]),
                    )
                )
                or 0
            )
    ticks = cpu_ticks(worker.pid) - before
    busy = machine.read()
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    Execution.status,
                    Execution.condition_met,
                    Execution.usage,
                    Execution.completed_at,
                ).where(Execution.task_id.in_(ids), Execution.created_at >= armed)
            )
        ).all()
    last = max(row.completed_at for row in rows)
    if last.tzinfo is None:
        last = last.replace(tzinfo=dt.UTC)
    return WorkerRound(
        mode=mode,
        scenario=scenario,
        checks=len(rows),
        cpu_ms=ticks * TICK_MS / len(rows),
        wall=(last - armed).total_seconds(),
        failed=sum(row.status != "success" for row in rows),
        met=sum(bool(row.condition_met) for row in rows),
        not_modified=sum((row.usage or {}).get("pages_not_modified", 0) for row in rows),
        model_calls=sum((row.usage or {}).get("llm_calls", 0) for row in rows),
        machine=busy,
    )


@dataclass
class Storage:
    checks: int
    body_bytes: int  # bytes of the 200 answers' bodies the worker read
    not_modified: int
    contents: int  # distinct texts stored
    text_bytes: int  # their size, uncompressed
    stored_bytes: int  # their size as stored (zlib)
    sources: int  # source rows (one per source per run)


async def per_worker(
    pages: Proc, model: Proc, *, tasks: int, kb: int
) -> tuple[list[WorkerRound], Storage, list[str]]:
    data_dir = fresh_dir("worker")
    settings = settings_for(data_dir, model)
    bodies = [
        task_body(f"{pages.url}/w/{kb}/{n}", kind="page", mode=mode, name=f"{mode} {n}")
        for mode, offset in (("change", 0), ("model", tasks))
        for n in range(offset, offset + tasks)
    ]
    ids = await create_tasks(settings, bodies)
    by_mode = {"change": ids[:tasks], "model": ids[tasks:]}
    db = create_engine(settings.database_url or "")
    sessions = create_sessionmaker(db)
    log_file = (WORK_DIR / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "torale", "worker"],
        env=worker_env(settings),
        cwd=data_dir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    rounds: list[WorkerRound] = []
    failures: list[str] = []
    start_stats = page_stats(pages)
    try:
        await asyncio.sleep(3)  # the worker's start (imports, schema check)
        for mode, mode_ids in by_mode.items():
            for scenario in ("baseline", *SCENARIOS):
                httpx.get(f"{pages.url}/mode/{'static' if scenario == 'baseline' else scenario}")
                result = await worker_round(sessions, worker, mode_ids, mode, scenario)
                log(
                    f"  worker, {mode} tasks, {scenario}: {result.cpu_ms:.1f} ms CPU per check, "
                    f"{result.checks / result.wall:.0f} checks/s"
                )
                if scenario != "baseline":
                    rounds.append(result)
                failures += check_worker_round(result)
        end_stats = page_stats(pages)
        async with sessions() as session:
            contents, text_bytes, stored = (
                await session.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(SnapshotContent.size), 0),
                        func.coalesce(func.sum(func.length(SnapshotContent.data)), 0),
                    )
                )
            ).one()
            sources = await session.scalar(select(func.count()).select_from(ExecutionSource))
            checks = await session.scalar(select(func.count()).select_from(Execution))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        await db.dispose()
    storage = Storage(
        checks=int(checks or 0),
        body_bytes=end_stats["body_bytes"] - start_stats["body_bytes"],
        not_modified=end_stats["not_modified"] - start_stats["not_modified"],
        contents=int(contents),
        text_bytes=int(text_bytes),
        stored_bytes=int(stored),
        sources=int(sources or 0),
    )
    return rounds, storage, failures


def check_worker_round(r: WorkerRound) -> list[str]:
    name = f"worker {r.mode} {r.scenario}"
    problems = [f"{name}: {r.failed} checks failed"] if r.failed else []
    if r.mode == "change" and r.scenario != "baseline":
        expected = r.checks if r.scenario == "text" else 0
        if r.met != expected:
            problems.append(f"{name}: {r.met} of {r.checks} checks saw a change")
    if r.scenario == "static" and r.not_modified != r.checks:
        problems.append(f"{name}: {r.not_modified} of {r.checks} reads answered 304")
    if r.mode == "model" and r.scenario in ("static", "same", "noise") and r.model_calls:
        problems.append(f"{name}: {r.model_calls} model calls for unchanged text")
    return problems


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def environment() -> list[tuple[str, str]]:
    return common_environment(PACKAGES)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value >= 1 else f"{value * 1000:.0f} µs"


def _mb(n: int) -> str:
    return f"{n / 1_000_000:,.1f} MB"


def find(groups: list[Group], **where: Any) -> Group:
    return next(g for g in groups if all(getattr(g, k) == v for k, v in where.items()))


def render_section(
    groups: list[Group],
    busy: float,
    extraction: dict[int, Extraction],
    floor: Floor,
    worker: list[WorkerRound],
    storage: Storage | None,
    args: argparse.Namespace,
    env: list[tuple[str, str]],
) -> str:
    out = [SECTION_START, "## Watching pages (`bench/watch.py`)", ""]
    verdicts = []
    for kind in KINDS:
        for scenario in SCENARIOS:
            group = find(groups, mode="change", kind=kind, scenario=scenario, kb=100)
            page, run = _median(group.page_ms), _median(group.run_ms)
            goal = GOALS_MS[scenario]
            verdicts.append(
                f"{KIND_NAMES[kind]}, {SCENARIO_NAMES[scenario]}: page path {_ms(page)} "
                f"({'met' if page <= goal else 'NOT met'}), whole check {_ms(run)} "
                f"({'met' if run <= goal else 'NOT met'}); goal ≤ {goal:g} ms"
            )
    out += [
        "Goals, CPU per check of a 100 KB page: ≤ 2 ms for a 304, ≤ 8 ms for a 200 with the "
        "same bytes, ≤ 30 ms when only noise or the text changed. **Results** (median of "
        f"{args.rounds} rounds; *page path*: fetch, extraction or selection, comparison; "
        "*whole check*: `run_execution`, with its database work — the claim and the record, two "
        "transactions — and snapshots):",
        "",
        *[f"- {v}" for v in verdicts],
        "",
        "### CPU per check, change tasks (process CPU time, median of the rounds)",
        "",
        "| Page | Scenario | 50 KB page path | 100 KB page path | 200 KB page path | "
        "100 KB whole check | SQL statements / units of work per check | goal (100 KB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        for scenario in SCENARIOS:
            cells = [
                _ms(
                    _median(
                        find(groups, mode="change", kind=kind, scenario=scenario, kb=kb).page_ms
                    )
                )
                for kb in (50, 100, 200)
            ]
            group = find(groups, mode="change", kind=kind, scenario=scenario, kb=100)
            out.append(
                f"| {KIND_NAMES[kind]} | {SCENARIO_NAMES[scenario]} | {' | '.join(cells)} | "
                f"{_ms(_median(group.run_ms))} | {group.statements} / {group.units} | "
                f"≤ {GOALS_MS[scenario]:g} ms |"
            )
    sel_304 = find(groups, mode="change", kind="selector", scenario="static", kb=100)
    page_noise = find(groups, mode="change", kind="page", scenario="noise", kb=100)
    database = _median(sel_304.run_ms) - _median(sel_304.page_ms)
    page_goals = all(
        _median(find(groups, mode="change", kind=k, scenario=sc, kb=100).page_ms) <= GOALS_MS[sc]
        for k in KINDS
        for sc in ("static", "same")
    )
    out += [
        "",
        "Where the CPU goes:",
        "",
        f"- *Whole check minus page path* is the run's database work, about {_ms(database)} per "
        f"check here (100 KB, selector, 304: {sel_304.statements} SQL statements in "
        f"{sel_304.units} units of work): the claim (the owner's lock, the task with its last "
        "successful run, the execution started, the page cache's entries and the hashes of "
        "the last run's texts) and the record (the owner's lock, the execution and the task, "
        "the run's outcome, its texts marked seen and its source rows; the page cache only "
        "when the entry changed; the last run's texts only when a text changed), on SQLite "
        "with `sqlite3` called inline on the event loop (`db.database._InlineSqlite`), its "
        "statements built once. Every check pays it, whatever the page did, so a whole check "
        "cannot come down to the 2 ms (304) or 8 ms (same bytes) goals by work on the page "
        f"path (which {'meets' if page_goals else 'does NOT meet'} them for both kinds of "
        "page); for a 304 the whole check is "
        f"{_median(sel_304.run_ms) / max(_median(sel_304.page_ms), 0.001):.0f}x its page path.",
        "- The floor on this stack, measured in the same run: one unit of work holding one "
        f"UPDATE of an execution row costs {_ms(floor.one_update_ms)} of CPU through "
        f"`session_scope` (SQLAlchemy, `sqlite3` inline), and each further statement "
        f"{_ms(floor.per_statement_ms)}; on sqlite3 itself (no SQLAlchemy) the same "
        f"transaction costs {_ms(floor.sqlite3_ms)}. A run that is recorded at all (claimed, "
        "then its outcome written, so that a crash between the two loses no scheduled run) is "
        "two such units; the rest of a whole check's database work is SQLAlchemy's execution "
        "of its statements (taking the compiled form from its cache, binding, loading rows) "
        "and the ORM's flush of the record. For scale: changedetection.io spends "
        "about 17 ms per unchanged check (issue #15).",
        "- Reading the whole page's text, the page path is trafilatura's extraction "
        f"({_ms(_median(page_noise.page_ms))} per 100 KB check when only noise changed); a "
        "selector needs lxml's parse and the selection only. Before this version a profile "
        "(py-spy over this benchmark's first part, commit 0b67e36) put 39% of all samples in "
        "`extract_text`, half of it in trafilatura's metadata (dates with htmldate, authors, "
        "categories, licence: none used by a run); and a 200 with the same bytes was extracted "
        "again like a changed page. Now the title is read alone (`fetch._title`, the same "
        "title rules) and a body whose hash equals the last read's reuses its text "
        "(`pages.body_hash`), so the *same bytes* rows cost a fetch and a hash.",
    ]
    out += [
        "",
        "Extracting the readable text alone, in the same run (median of "
        f"{args.rounds} interleaved repeats, noise pages): what `extract_text` costs now, "
        "against trafilatura's full extraction with its metadata (dates, authors, categories "
        "…), which is what every check of a changed or validator-less page paid before the "
        "title was read alone; and trafilatura's `fast=True` (not used: see "
        "docs/performance.md), with whether its text was the same as `extract_text`'s on "
        "these pages:",
        "",
        "| Page size | `extract_text` | full extraction with metadata (before) | now / before | "
        "`fast=True` | same text |",
        "|---:|---:|---:|---:|---:|---|",
        *[
            f"| {kb} KB | {_ms(e.now)} | {_ms(e.before)} | {e.now / e.before:.2f} | "
            f"{_ms(e.fast)} | {'yes' if e.fast_same else 'no'} |"
            for kb, e in extraction.items()
        ],
    ]
    out += [
        "",
        "### The same checks as model tasks (local fake model), 100 KB",
        "",
        "| Page | Scenario | change task, whole check | model task, whole check | model / change |",
        "|---|---|---:|---:|---:|",
    ]
    for kind in KINDS:
        for scenario in SCENARIOS:
            change = _median(find(groups, mode="change", kind=kind, scenario=scenario).run_ms)
            model = _median(find(groups, mode="model", kind=kind, scenario=scenario).run_ms)
            out.append(
                f"| {KIND_NAMES[kind]} | {SCENARIO_NAMES[scenario]} | {_ms(change)} | "
                f"{_ms(model)} | {model / change:.2f} |"
            )
    out += [
        "",
        f"{args.per_group} tasks per row and page size, each checked once per round, one "
        f"check at a time, {args.rounds} measured rounds after a first (baseline) round, "
        "rows interleaved within each round so that drift on a shared machine hits every row "
        "alike. The engine runs in the benchmark's process (SQLite in a fresh data directory, "
        "the product's `Engine.build`); the pages and the fake model are other processes, so "
        "their CPU is not counted. Tasks have no notification channels (sending is not "
        "measured). Per-round figures: `bench/.work/watch/results.json`. The whole machine "
        f"(every process, ours or not) had {busy:.2f} of its {os.cpu_count()} CPUs busy on "
        "average meanwhile: CPU time per check grows a little on a crowded machine (caches, "
        "hyperthreads), so compare rows of one run rather than runs.",
    ]
    if worker and storage:
        out += [
            "",
            f"### One worker, {args.tasks:,} change tasks and {args.tasks:,} model tasks "
            f"({args.worker_kb} KB pages, readable text)",
            "",
            "| Tasks | Scenario | worker CPU per check | checks/s on one core (1 / CPU) | "
            "checks/s measured | model calls | machine CPUs busy |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in worker:
            out.append(
                f"| {r.mode} | {SCENARIO_NAMES[r.scenario]} | {_ms(r.cpu_ms)} | "
                f"{1000 / r.cpu_ms:,.0f} | {r.checks / r.wall:,.0f} | {r.model_calls} | "
                f"{r.machine:.2f} of {os.cpu_count()} |"
            )
        out += [
            "",
            "One `torale worker` process (the local scheduler, `TORALE_WORKER_CONCURRENCY` at "
            "its default, SQLite): all tasks of a row are made due at once and the row ends when "
            "the last check finished. Worker CPU from `/proc/<pid>/stat` (10 ms ticks over "
            "the whole row, so the scheduler's claims and the idle polls are in it). *Measured* "
            "checks/s depend on what else the machine was doing (the page server, the fake "
            "model, other users); *1 / CPU* is what one core sustains. Each set of tasks had a "
            "first round (baseline, pages read in full) before the rows shown.",
            "",
            "### Snapshot storage",
            "",
            f"After {storage.checks:,} checks of {2 * args.tasks:,} tasks by the worker: "
            f"{_mb(storage.body_bytes)} of page bodies read (200 answers; "
            f"{storage.not_modified:,} more answered 304), {storage.contents:,} distinct texts "
            f"kept in `snapshot_contents`: {_mb(storage.text_bytes)} of text stored as "
            f"{_mb(storage.stored_bytes)} (zlib), and {storage.sources:,} `execution_sources` "
            "rows (one per source per run, pointing at a text). Stored / fetched = "
            f"{storage.stored_bytes / max(storage.body_bytes, 1):.4f}.",
        ]
    out += ["", "Environment:", ""]
    out += [f"- {name}: {value}" for name, value in env]
    out += ["", SECTION_END]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


async def bench(
    args: argparse.Namespace,
) -> tuple[
    list[Group],
    float,
    dict[int, Extraction],
    Floor,
    list[WorkerRound],
    Storage | None,
    list[str],
]:
    pages = start_pages()
    model = start_model()
    try:
        log(f"part 1: CPU per check ({args.per_group} tasks per row, {args.rounds} rounds)")
        extraction = extraction_baseline(pages, args.rounds)
        groups, failures, busy, floor = await per_check(
            pages, model, per_group=args.per_group, rounds=args.rounds, profile=args.profile
        )
        rounds: list[WorkerRound] = []
        storage = None
        if args.tasks:
            log(f"part 2: one worker, {args.tasks} change tasks and {args.tasks} model tasks")
            rounds, storage, more = await per_worker(
                pages, model, tasks=args.tasks, kb=args.worker_kb
            )
            failures += more
    finally:
        pages.stop()
        model.stop()
    return groups, busy, extraction, floor, rounds, storage, failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="Measured rounds (default 5).")
    parser.add_argument("--per-group", type=int, default=10, help="Tasks per row and size.")
    parser.add_argument(
        "--tasks", type=int, default=1000, help="Worker part: tasks of each mode (0: skip it)."
    )
    parser.add_argument("--worker-kb", type=int, default=100, help="Worker part: page size.")
    parser.add_argument("--profile", action="store_true", help="cProfile the page paths.")
    parser.add_argument(
        "--no-write", action="store_true", help="Print the results; leave RESULTS.md alone."
    )
    parser.add_argument("--serve-model", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_model:
        serve_model(args.serve_model)
        return 0
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    groups, busy, extraction, floor, rounds, storage, failures = asyncio.run(bench(args))
    (WORK_DIR / "results.json").write_text(
        json.dumps(
            {
                "groups": [
                    {
                        "name": g.name,
                        "run_ms": g.run_ms,
                        "page_ms": g.page_ms,
                        "statements": g.statements,
                        "units_of_work": g.units,
                    }
                    for g in groups
                ],
                "floor": dataclasses.asdict(floor),
                "worker": [dataclasses.asdict(r) for r in rounds],
                "storage": dataclasses.asdict(storage) if storage else None,
                "extraction_ms": {kb: dataclasses.asdict(e) for kb, e in extraction.items()},
            },
            indent=1,
        )
        + "\n"
    )
    if failures:
        print("\nbench/watch.py: CHECK FAILED", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        return 1
    section = render_section(groups, busy, extraction, floor, rounds, storage, args, environment())
    print()
    print(section)
    if not args.no_write:
        write_section("watch", section)
        log(f"wrote {RESULTS_FILE.relative_to(REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
