"""API throughput benchmark: Torale's authenticated task routes against a bare FastAPI endpoint.

Run it as `.venv/bin/python bench/api.py` (or `make bench`). It needs `wrk`
(`apt-get install -y wrk`). Every target is served by one uvicorn process started the way
`torale serve` starts it (uvloop + httptools from uvicorn[standard], access log on at log level
info), pinned to CPU 0 when `taskset` works, with wrk pinned to CPU 1. Results go to the API
section of bench/RESULTS.md; see bench/README.md.

`bench/api.py --serve-bare PORT` is the baseline server (used internally).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
from common import RESULTS_FILE, cpu_ticks, free_port, section_markers, write_section

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work" / "api"

RATE_LIMITS = "100000000/minute"
POSTGRES_ADMIN_URL = os.environ.get(
    "TORALE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
LIST_TASKS = 20
GOAL_RATIO = 0.50
SERVER_CPU = 0
WRK_CPU = 1

# Context for the results: the hosted service's published 0.0.2 backend, as measured on this
# kind of machine with the same kind of load (figures given with the task, not re-measured here).
HOSTED_LIST_RPS = 660
HOSTED_BARE_RPS = 9_600
HOSTED_LIST_P99_MS = 137

SECTION_START, SECTION_END = section_markers("api")

PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "aiosqlite",
    "pydantic",
    "pydantic-core",
    "limits",
)

TASK_BODY = {
    "name": "Benchmark task",
    "search_query": "When is the next iPhone release date?",
    "condition_description": "Apple has announced a specific release date",
    "schedule": "0 9 * * *",
    "timezone": "Europe/Berlin",
}


# --------------------------------------------------------------------------------------------
# The baseline server
# --------------------------------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """A bare FastAPI app on the same stack and with the same uvicorn options as `torale serve`."""
    import logging

    import uvicorn
    from fastapi import FastAPI

    # Same logging set-up as `torale serve` (torale.cli.server._configure_logging).
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = FastAPI(title="bare")

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", proxy_headers=False)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def http_json(
    method: str, url: str, *, token: str | None = None, body: object = None, timeout: float = 10
) -> tuple[int, dict[str, str], object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (our own URL)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read()
            return response.status, dict(response.headers.items()), json.loads(raw or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, dict(exc.headers.items()), json.loads(raw or b"null")


@dataclass
class CpuSnapshot:
    """CPU time of the whole server process and of its main (event-loop) thread."""

    at: float
    process: int
    main: int

    @classmethod
    def take(cls, pid: int) -> CpuSnapshot:
        return cls(time.monotonic(), cpu_ticks(pid), cpu_ticks(pid, pid))


def pinning_available() -> tuple[bool, str]:
    if shutil.which("taskset") is None:
        return False, "taskset not found"
    if not hasattr(os, "sched_getaffinity"):
        return False, "no CPU affinity support on this platform"
    cpus = os.sched_getaffinity(0)
    if not {SERVER_CPU, WRK_CPU} <= cpus:
        return False, f"CPUs {SERVER_CPU} and {WRK_CPU} are not both available (have {cpus})"
    probe = subprocess.run(
        ["taskset", "-c", str(WRK_CPU), "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return False, f"taskset failed: {probe.stderr.decode().strip()}"
    return True, f"server on CPU {SERVER_CPU}, wrk on CPU {WRK_CPU} (taskset)"


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(
    name: str, command: Sequence[str], port: int, env: dict[str, str], health_path: str
) -> Server:
    log_path = WORK_DIR / f"{name}.log"
    handle = log_path.open("wb")
    try:
        process = subprocess.Popen(
            list(command), env=env, cwd=WORK_DIR, stdout=handle, stderr=subprocess.STDOUT
        )
    finally:
        handle.close()  # the child has its own copy
    server = Server(name, process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} server exited with {process.returncode}; see {log_path}:\n"
                + log_path.read_text()[-3000:]
            )
        with contextlib.suppress(OSError, ValueError):
            status, _, _ = http_json("GET", server.base_url + health_path, timeout=2)
            if status == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} server did not answer {health_path} within 60 s; see {log_path}")


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unrecognised wrk time {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    bytes_per_response: float
    non_2xx: int
    socket_errors: int
    server_cpu: float  # fraction of one CPU the server process used during the run
    cpu_us: float  # server CPU time per request, all threads (µs)
    main_cpu_us: float  # of which on the main (event-loop) thread (µs)
    raw: str = field(repr=False)
    db_cpu_us: float | None = None  # PostgreSQL backends' CPU time per request (µs)


def parse_wrk(output: str) -> dict[str, float]:
    values: dict[str, float] = {}
    match = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not match:
        raise ValueError("no Requests/sec in wrk output:\n" + output)
    values["rps"] = float(match.group(1))
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", output, re.M)
        if not match:
            raise ValueError(f"no {pct}% latency in wrk output (is --latency set?):\n" + output)
        values[f"p{pct}"] = _ms(match.group(1))
    match = re.search(r"^\s+(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", output, re.M)
    if not match:
        raise ValueError("no request count in wrk output:\n" + output)
    values["requests"] = float(match.group(1))
    values["bytes"] = float(match.group(2)) * _SIZE[match.group(3)]
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    values["non_2xx"] = float(match.group(1)) if match else 0.0
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    values["socket_errors"] = float(sum(int(g) for g in match.groups())) if match else 0.0
    return values


@dataclass
class Target:
    key: str
    label: str
    server: Server
    path: str
    script: Path
    database: PostgresDatabase | None = None  # whose backends' CPU to measure


@dataclass
class Load:
    threads: int
    connections: int
    duration: int
    wrk_prefix: list[str]


def run_wrk(target: Target, load: Load, duration: int) -> WrkResult:
    command = [
        *load.wrk_prefix,
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(target.script),
        target.server.base_url + target.path,
    ]
    tick = 1 / os.sysconf("SC_CLK_TCK")
    db_before = target.database.backend_ticks() if target.database else None
    before = CpuSnapshot.take(target.server.pid)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    after = CpuSnapshot.take(target.server.pid)
    db_ticks = None
    if target.database is not None and db_before is not None:
        db_after = target.database.backend_ticks()
        if db_after is not None:  # a backend that started during the run counts from 0
            db_ticks = sum(t - db_before.get(pid, 0) for pid, t in db_after.items())
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
    values = parse_wrk(done.stdout)
    requests = int(values["requests"])
    per_request = tick * 1e6 / max(requests, 1)
    return WrkResult(
        rps=values["rps"],
        p50_ms=values["p50"],
        p90_ms=values["p90"],
        p99_ms=values["p99"],
        requests=requests,
        bytes_per_response=values["bytes"] / requests if requests else 0.0,
        non_2xx=int(values["non_2xx"]),
        socket_errors=int(values["socket_errors"]),
        server_cpu=(after.process - before.process) * tick / (after.at - before.at),
        cpu_us=(after.process - before.process) * per_request,
        main_cpu_us=(after.main - before.main) * per_request,
        raw=done.stdout,
        db_cpu_us=None if db_ticks is None else db_ticks * per_request,
    )


def lua_script(path: Path, *, token: str | None, method: str, body: object = None) -> Path:
    lines = [f'wrk.method = "{method}"']
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    if body is not None:
        payload = json.dumps(body)
        assert "]]" not in payload
        lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines.append(f"wrk.body = [[{payload}]]")
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Torale set-up
# --------------------------------------------------------------------------------------------


def torale_env(data_dir: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    if database_url:
        env["TORALE_DATABASE_URL"] = database_url
    env.update(
        TORALE_DATA_DIR=str(data_dir),
        TORALE_RATE_LIMITS=RATE_LIMITS,
        TORALE_LOG_LEVEL="info",
        TORALE_HOST="127.0.0.1",
        TORALE_PORT=str(port),
        # Tasks judged by a model need one configured to be accepted; the benchmark never
        # runs them (daily at 09:00), so it points at nothing.
        TORALE_MODEL="bench-model",
        TORALE_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        PYTHONUNBUFFERED="1",
    )
    return env


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


def seed_tasks(server: Server, token: str) -> dict[str, str]:
    """Create LIST_TASKS tasks through the API; check the list answers them all. Returns headers."""
    for i in range(LIST_TASKS):
        status, _, body = http_json(
            "POST",
            server.base_url + "/api/v1/tasks",
            token=token,
            body={**TASK_BODY, "name": f"Benchmark task {i + 1}"},
        )
        if status not in (200, 201):
            raise RuntimeError(f"creating a task answered {status}: {body}")
    status, headers, page = http_json("GET", server.base_url + "/api/v1/tasks", token=token)
    if status != 200 or not isinstance(page, dict):
        raise RuntimeError(f"listing tasks answered {status}: {page}")
    items = page.get("items")
    if not isinstance(items, list) or len(items) != LIST_TASKS or page.get("total") != LIST_TASKS:
        raise RuntimeError(f"expected a page of {LIST_TASKS} tasks, got {page}")
    return {k.lower(): v for k, v in headers.items()}


# --------------------------------------------------------------------------------------------
# PostgreSQL: a database of the benchmark's own, its backends' CPU, a statement trace
# --------------------------------------------------------------------------------------------


class PostgresDatabase:
    """A database made for the run on the local server (as the tests use it), dropped after."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"torale_bench_{uuid.uuid4().hex[:10]}"
        base = admin_url.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}".replace("postgresql://", "postgresql+asyncpg://", 1)
        self.proc_readable = True

    def _admin(self, *statements: str) -> list[list[tuple[Any, ...]]]:
        import asyncpg

        async def go() -> list[list[tuple[Any, ...]]]:
            conn = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                return [[tuple(r) for r in await conn.fetch(sql)] for sql in statements]
            finally:
                await conn.close()

        return asyncio.run(go())

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')
        # Calls of trigger functions counted in pg_stat_user_functions (this database only).
        self._admin(f"ALTER DATABASE \"{self.name}\" SET track_functions = 'pl'")

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def version(self) -> str:
        return str(self._admin("SHOW server_version")[0][0][0])

    def backend_ticks(self) -> dict[int, int] | None:
        """CPU ticks of every backend connected to the database (None if /proc says nothing)."""
        if not self.proc_readable:
            return None
        rows = self._admin(
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.name}' "  # noqa: S608 (our own name)
            "AND pid <> pg_backend_pid()"
        )[0]
        ticks: dict[int, int] = {}
        for (pid,) in rows:
            try:
                ticks[int(pid)] = cpu_ticks(int(pid))
            except OSError:
                if not Path(f"/proc/{pid}").exists():
                    continue  # ended since
                self.proc_readable = False
                return None
        return ticks


@dataclass
class Trace:
    """What one request asked PostgreSQL, averaged over a few."""

    round_trips: float
    statements: float


def trace_statements(database_url: str, requests: int = 10) -> tuple[dict[str, Trace], float]:
    """Round trips and statements per request of each target, counted by a proxy that reads
    the PostgreSQL protocol (tests/fixtures/pg_wire.py) in front of an in-process app; and
    trigger functions run per create (pg_stat_user_functions)."""
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))
    import httpx
    from asgi_lifespan import LifespanManager
    from tests.fixtures.pg_wire import PgWireCounter

    from torale.app import create_app
    from torale.auth import service as auth_service
    from torale.config import Settings

    database = PostgresDatabase(POSTGRES_ADMIN_URL)
    traces: dict[str, Trace] = {}
    database.create()
    try:
        from torale.db import migrate

        asyncio.run(migrate.upgrade(database.url))

        async def go() -> int:
            with PgWireCounter("127.0.0.1", 5432) as counter:
                settings = Settings(
                    _env_file=None,
                    database_url=counter.url(database.url),
                    data_dir=WORK_DIR / "trace",
                    secret_key="bench-trace-" + "x" * 32,
                    rate_limits=RATE_LIMITS,
                    model="bench-model",
                    openai_base_url="http://127.0.0.1:9/v1",
                )
                app = create_app(settings, scheduler=False)
                async with LifespanManager(app):
                    state = app.state.torale
                    for _ in range(200):  # the change watch listens in the background
                        if state.changes.caching:
                            break
                        await asyncio.sleep(0.02)
                    async with state.sessions() as session:
                        user = await auth_service.create_user(session, email="t@bench.invalid")
                        _, key = await auth_service.create_api_key(
                            session, user_id=user.id, name="t", hashing_key=state.hashing_key
                        )
                        await session.commit()
                    headers = {"Authorization": f"Bearer {key}"}
                    transport = httpx.ASGITransport(app=app)
                    async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
                        made = await c.post("/api/v1/tasks", json=TASK_BODY, headers=headers)
                        task_id = made.json()["id"]
                        creates = 1

                        async def count(key: str, method: str, path: str, fresh: bool) -> None:
                            nonlocal creates
                            totals = [0, 0]
                            for _ in range(requests):
                                if fresh:  # a write first: the list's page is stale
                                    await c.post("/api/v1/tasks", json=TASK_BODY, headers=headers)
                                    creates += 1
                                counter.reset()
                                body = TASK_BODY if method == "POST" else None
                                response = await c.request(method, path, json=body, headers=headers)
                                assert response.status_code == 200, response.text
                                creates += method == "POST"
                                seen = counter.reset()
                                totals[0] += seen.round_trips
                                totals[1] += seen.statements
                            traces[key] = Trace(totals[0] / requests, totals[1] / requests)

                        await c.get("/api/v1/tasks", headers=headers)
                        await c.get(f"/api/v1/tasks/{task_id}", headers=headers)
                        await count("list", "GET", "/api/v1/tasks", fresh=False)
                        await count("get", "GET", f"/api/v1/tasks/{task_id}", fresh=False)
                        await count("uncached", "GET", "/api/v1/tasks", fresh=True)
                        await count("create", "POST", "/api/v1/tasks", fresh=False)
                        # The keep-alive markers of the change watch are not requests' work.
            return creates

        creates = asyncio.run(go())
        time.sleep(0.5)  # the backends have ended and reported their statistics
        import asyncpg

        async def function_calls() -> int:
            conn = await asyncpg.connect(database.url.replace("+asyncpg", ""), timeout=10)
            try:
                sql = "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
                return int(await conn.fetchval(sql))
            finally:
                await conn.close()

        triggers_per_create = asyncio.run(function_calls()) / creates
    finally:
        database.drop()
    return traces, triggers_per_create


# --------------------------------------------------------------------------------------------
# Profiling (optional)
# --------------------------------------------------------------------------------------------

# Frames whose inclusive share says where a request's time goes. SQLAlchemy's asyncio layer
# runs ORM/Core code inside greenlets, and py-spy shows those stacks without their callers, so
# the Torale frames here undercount database work; the SQLAlchemy frames catch it.
PHASES = (
    ("uvicorn: HTTP parsing, response writing", "HttpToolsProtocol.data_received"),
    ("uvicorn: ASGI send (headers, body)", "RequestResponseCycle.send"),
    ("access log line (`Logger.info`)", "Logger.info (logging/"),
    ("FastAPI dependency solving (auth, session, params)", "solve_dependencies"),
    ("Torale auth dependency (`current_principal`)", "current_principal (torale/"),
    ("Torale rate limiter (`RateLimiter.hit`)", "RateLimiter.hit"),
    ("Torale route `list_tasks`", "list_tasks (torale/tasks/router.py)"),
    ("`TaskRead.model_validate`", "BaseModel.model_validate"),
    ("FastAPI response serialisation", "serialize_response"),
    ("SQLAlchemy `Session.execute` (statement → ORM rows)", "Session.execute (sqlalchemy/"),
    ("SQLAlchemy ORM row loading (`loading.instances`)", "instances (sqlalchemy/orm/loading"),
    ("SQLAlchemy cache key generation", "_generate_cache_key"),
    ("SQLAlchemy commit", "Session.commit (sqlalchemy/"),
    ("SQLAlchemy pool checkout/return", "(sqlalchemy/pool/"),
    ("aiosqlite, event-loop side (queue put, futures)", "(aiosqlite/"),
)


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/module.py:123)"; drop the line number.
    return re.sub(r":\d+\)$", ")", frame.strip())


def _short_path(frame: str) -> str:
    frame = re.sub(r"\(.*/site-packages/", "(", frame)
    frame = re.sub(r"\(.*/src/torale/", "(torale/", frame)
    return re.sub(r"\(.*/lib/python3\.\d+/", "(stdlib/", frame)


def _package(frame: str) -> str:
    match = re.search(r"\(([^/):]+)", frame)
    if not match:
        return "?"
    name = match.group(1).removesuffix(".py")
    if name == "stdlib":
        sub = re.search(r"\(stdlib/([^/):]+)", frame)
        return "stdlib " + (sub.group(1).removesuffix(".py") if sub else "?")
    return name


def summarise_profile(raw_path: Path, top: int = 12) -> str:
    """Where the event loop's time goes, from `py-spy record --threads --format raw` output."""
    threads: dict[str, set[str]] = {}
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    main = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_path(_frame_name(f)) for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if not frames or not frames[0].startswith("thread "):
            continue
        thread, frames = frames[0], frames[1:]
        name = re.sub(r"^Thread-\d+ \((\w+)\)$", r"\1", thread.split(": ", 1)[-1])
        threads.setdefault(name, set()).add(thread)
        if "MainThread" not in thread or not frames:
            continue
        main += count
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for label, needle in PHASES:
            if any(needle in f for f in frames):
                phases[label] += count
    if not main:
        return "(no samples of the main thread)"

    def pct(n: int) -> str:
        return f"{100 * n / main:.1f}"

    out = [
        f"py-spy at 100 Hz: {main} samples of the main (event-loop) thread, broken down below. "
        "Distinct threads seen: "
        + ", ".join(f"{name} ({len(ids)})" for name, ids in sorted(threads.items()))
        + ". (py-spy's idle detection is unreliable for those helper threads; the CPU/request "
        "split above gives their real share.)",
        "",
        "| Self time: function | % |",
        "|---|---:|",
    ]
    out += [f"| `{name}` | {pct(n)} |" for name, n in own.most_common(top)]
    out += ["", "| Self time: package | % |", "|---|---:|"]
    out += [f"| {name} | {pct(n)} |" for name, n in packages.most_common(top)]
    out += ["", "| Inclusive time: phase | % |", "|---|---:|"]
    out += [f"| {label} | {pct(phases[label])} |" for label, _ in PHASES]
    out += [
        "",
        "`Runner.run` self time is uvloop's C event loop (epoll, socket I/O, callbacks "
        "scheduled from other threads). SQLAlchemy's asyncio layer runs ORM code in greenlets "
        "whose stacks py-spy shows without their callers, so Torale frames undercount time "
        "spent under them; the SQLAlchemy rows catch it.",
    ]
    return "\n".join(out)


def profile_target(target: Target, load: Load, seconds: int, pin: bool) -> str | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        log("py-spy not found; skipping the profile (.venv/bin/pip install py-spy)")
        return None
    raw = WORK_DIR / f"profile-{target.key}.txt"
    spy = subprocess.Popen(
        [
            *(["taskset", "-c", str(WRK_CPU)] if pin else []),
            py_spy,
            "record",
            "--pid",
            str(target.server.pid),
            "--duration",
            str(seconds),
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
    time.sleep(1)
    result = run_wrk(target, load, seconds + 1)
    _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0:
        log(f"py-spy failed: {err.decode().strip()}")
        return None
    log(f"profiled {target.label}: {result.rps:,.0f} req/s under py-spy; stacks in {raw}")
    return (
        f"{seconds} s of the list load under py-spy ({result.rps:,.0f} req/s while sampled). "
        f"The collapsed stacks are in `{raw.relative_to(REPO_DIR)}` (speedscope.app and "
        "flamegraph.pl read them). " + summarise_profile(raw)
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def environment(pinned: bool, pin_note: str) -> list[tuple[str, str]]:
    return common.environment(
        PACKAGES,
        [
            ("Load generator", common.wrk_version()),
            ("Pinning", pin_note if pinned else f"not used ({pin_note})"),
        ],
    )


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


# Each goal: the target, and its least requests/s as a share of the bare endpoint's (issue 16).
GOALS = {"list": 0.50, "get": 0.25, "uncached": 0.20, "create": 0.15}
LABELS = {
    "bare": "bare FastAPI `GET /ping`",
    "list": f"`GET /api/v1/tasks` ({LIST_TASKS} tasks, cached page, fast path)",
    "routed": "… the same page through FastAPI routing (`?via=route`)",
    "get": "`GET /api/v1/tasks/{id}`",
    "uncached": "`GET /api/v1/tasks` after a write (cache miss: query + serialise)",
    "create": "`POST /api/v1/tasks` (local scheduler)",
}


@dataclass
class DatabaseRun:
    name: str  # sqlite or postgresql
    targets: list[Target]
    results: dict[str, list[WrkResult]]
    rate_headers: dict[str, str]
    traces: dict[str, Trace] | None = None
    triggers_per_create: float | None = None
    server_version: str | None = None
    profiles: list[str] = field(default_factory=list)

    def median(self, key: str, attribute: str) -> float | None:
        values = [getattr(r, attribute) for r in self.results[key]]
        if any(v is None for v in values):
            return None
        return float(statistics.median(values))


def render_section(
    *,
    runs: list[DatabaseRun],
    load: Load,
    rounds: int,
    warmup: int,
    env: list[tuple[str, str]],
) -> str:
    out = [SECTION_START, "## API throughput (`bench/api.py`)", ""]
    out += [
        "Goals (issue 16), as requests/s against a bare FastAPI endpoint measured in the same "
        "run, one process each, on SQLite and on PostgreSQL: "
        + ", ".join(f"{LABELS[k].split(' (')[0]} ≥ {g:.2f}" for k, g in GOALS.items())
        + ".",
        "",
        "Each cell: the ratio of requests/s (the goal's measure) · and of CPU per request "
        "(bare's CPU/request over the target's). On this shared 2-CPU machine other people's "
        "work takes the CPUs in bursts, so requests/s of targets measured seconds apart can "
        "differ several-fold while CPU per request stays put: read the CPU ratio as what one "
        "process can do when it has a core.",
        "",
        "| Goal | " + " | ".join(run.name for run in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for key, goal in GOALS.items():
        cells = []
        for run in runs:
            ratio = (run.median(key, "rps") or 0) / (run.median("bare", "rps") or 1)
            by_cpu = (run.median("bare", "cpu_us") or 0) / (run.median(key, "cpu_us") or 1)
            cells.append(
                f"{ratio:.2f} {'✓' if ratio >= goal else '✗'} · "
                f"{by_cpu:.2f} {'✓' if by_cpu >= goal else '✗'}"
            )
        out.append(f"| {LABELS[key]} ≥ {goal:.2f} | " + " | ".join(cells) + " |")
    out += [
        "",
        "Where a goal is not met, [docs/performance.md](../docs/performance.md) gives where the "
        "remaining CPU of the request goes and what limits it.",
        "",
        f"Load: `wrk -t{load.threads} -c{load.connections} -d{load.duration}s --latency`, "
        f"{warmup} s warm-up per target, {rounds} rounds interleaved (every target once per "
        "round), median shown. Each target is served by one uvicorn process (uvloop + "
        "httptools, access log on, written to a file) started as `torale serve` starts it; "
        "SQLite in a fresh data directory, PostgreSQL in a database made for the run on the "
        "local server (as the tests use it) and dropped after. *Server CPU/request*: the "
        "server process's CPU time (all threads; the event loop's in brackets) over the "
        "requests served. *DB CPU/request*: the CPU time of the PostgreSQL backends serving "
        "the run's database, from /proc, over the same requests.",
        "",
    ]
    for run in runs:
        bare = run.median("bare", "rps") or 1.0
        out += [
            f"### {run.name}" + (f" ({run.server_version})" if run.server_version else ""),
            "",
            "| Target | req/s | p50 | p99 | server CPU/request | DB CPU/request | vs bare "
            "(req/s) | vs bare (CPU) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in run.targets:
            rps = run.median(t.key, "rps") or 0.0
            cpu = run.median(t.key, "cpu_us") or 0.0
            main = run.median(t.key, "main_cpu_us") or 0.0
            db = run.median(t.key, "db_cpu_us")
            versus = "1.00" if t.key == "bare" else f"{rps / bare:.2f}"
            by_cpu = (run.median("bare", "cpu_us") or 0) / (cpu or 1)
            out.append(
                f"| {t.label} | {rps:,.0f} | {fmt_ms(run.median(t.key, 'p50_ms') or 0)} | "
                f"{fmt_ms(run.median(t.key, 'p99_ms') or 0)} | {cpu:,.0f} µs ({main:,.0f}) | "
                + ("-" if db is None or t.key == "bare" else f"{db:,.0f} µs")
                + f" | {versus} | {by_cpu:.2f} |"
            )
        out += [
            "",
            "Per round (req/s): "
            + "; ".join(
                f"{t.key} " + ", ".join(f"{r.rps:,.0f}" for r in run.results[t.key])
                for t in run.targets
            )
            + ". Every run had 0 non-2xx responses and 0 socket errors (the script fails "
            "otherwise); rate limiting ran on every authenticated request (a sample answer: "
            f"`X-RateLimit-Limit: {run.rate_headers.get('x-ratelimit-limit', '?')}`).",
            "",
        ]
        if run.traces is not None:
            out += [
                "What one request asks PostgreSQL (a proxy reading the protocol, "
                "`tests/fixtures/pg_wire.py`, in front of the same app in process; 10 "
                "requests of each, averaged): round trips (a simple query or a sync, each "
                "waits for the server) and statements the client ran; and, for a create, the "
                "trigger functions the database ran for it (`pg_stat_user_functions`).",
                "",
                "| Request | round trips | statements | trigger functions |",
                "|---|---:|---:|---:|",
            ]
            for key, trace in run.traces.items():
                triggers = (
                    f"{run.triggers_per_create:.1f}"
                    if key == "create" and run.triggers_per_create is not None
                    else "0"
                )
                out.append(
                    f"| {LABELS[key].split(' (')[0]} | {trace.round_trips:.1f} | "
                    f"{trace.statements:.1f} | {triggers} |"
                )
            out.append("")
        for profile in run.profiles:
            out += [profile, ""]
    out += ["Environment:", ""]
    out += [f"- {name}: {value}" for name, value in env]
    out += ["", SECTION_END]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def servers_stopped(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
        if servers:
            log("servers stopped")


def run_database(
    name: str,
    *,
    bare: Server,
    load: Load,
    server_prefix: list[str],
    pin: bool,
    args: argparse.Namespace,
) -> DatabaseRun:
    work = WORK_DIR / name
    work.mkdir(parents=True)
    database = PostgresDatabase(POSTGRES_ADMIN_URL) if name == "postgresql" else None
    if database is not None:
        database.create()
    url = database.url if database is not None else None
    servers: list[Server] = []
    try:
        with servers_stopped(servers):
            port = free_port()
            env = torale_env(work, port, url)
            log(f"{name}: creating two API keys (migrates the database)")
            list_key = create_key(env, "lister@bench.invalid")
            create_key_ = create_key(env, "creator@bench.invalid")

            def start_torale(label: str, port: int, extra_env: dict[str, str]) -> Server:
                command = [*server_prefix, sys.executable, "-m", "torale", "serve"]
                command += ["--host", "127.0.0.1", "--port", str(port)]
                server = start_server(
                    f"{name}-{label}",
                    command,
                    port,
                    {**torale_env(work, port, url), **extra_env},
                    "/health",
                )
                servers.append(server)
                return server

            torale = start_torale("torale", port, {})
            # The same database, the list cache off: every list request queries and
            # serialises, as the first request after each write does.
            nocache = start_torale(
                "nocache",
                free_port(),
                {"TORALE_TASK_LIST_CACHE_BYTES": "0", "TORALE_MIGRATE_ON_START": "false"},
            )
            if pin:
                for server in servers:
                    if os.sched_getaffinity(server.pid) != {SERVER_CPU}:
                        raise RuntimeError(f"{server.name} server is not pinned")
            rate_headers = seed_tasks(torale, list_key)
            if "x-ratelimit-limit" not in rate_headers:
                raise RuntimeError("no X-RateLimit-* headers on the list response")
            _, _, page = http_json("GET", torale.base_url + "/api/v1/tasks", token=list_key)
            assert isinstance(page, dict)
            task_id = page["items"][0]["id"]
            log(f"{name}: seeded {LIST_TASKS} tasks")
            read = lua_script(work / "list.lua", token=list_key, method="GET")
            targets = [
                Target("bare", LABELS["bare"], bare, "/ping", work / "bare.lua"),
                Target("list", LABELS["list"], torale, "/api/v1/tasks", read, database),
                Target(
                    "routed", LABELS["routed"], torale, "/api/v1/tasks?via=route", read, database
                ),
                Target("get", LABELS["get"], torale, f"/api/v1/tasks/{task_id}", read, database),
                Target("uncached", LABELS["uncached"], nocache, "/api/v1/tasks", read, database),
                Target(
                    "create",
                    LABELS["create"],
                    torale,
                    "/api/v1/tasks",
                    lua_script(
                        work / "create.lua", token=create_key_, method="POST", body=TASK_BODY
                    ),
                    database,
                ),
            ]
            lua_script(work / "bare.lua", token=None, method="GET")
            if args.warmup > 0:
                for t in targets:
                    log(f"{name}: warm-up {args.warmup}s: {t.key}")
                    run_wrk(t, load, args.warmup)
            results: dict[str, list[WrkResult]] = {t.key: [] for t in targets}
            for round_no in range(1, args.rounds + 1):
                for t in targets:
                    result = run_wrk(t, load, load.duration)
                    (work / f"wrk-{t.key}-{round_no}.txt").write_text(result.raw)
                    if result.non_2xx or result.socket_errors:
                        raise RuntimeError(
                            f"{name} {t.key}: {result.non_2xx} non-2xx responses, "
                            f"{result.socket_errors} socket errors; see {work}"
                        )
                    results[t.key].append(result)
                    db = "" if result.db_cpu_us is None else f", DB {result.db_cpu_us:,.0f} µs"
                    log(
                        f"{name} round {round_no} {t.key:>8}: {result.rps:>8,.0f} req/s  "
                        f"p99 {fmt_ms(result.p99_ms):>9}  server {result.cpu_us:,.0f} µs/request "
                        f"({result.main_cpu_us:,.0f} on the event loop){db}"
                    )
            profiles = []
            if args.profile > 0:
                for t in targets[1:]:
                    summary = profile_target(t, load, args.profile, pin)
                    if summary:
                        profiles.append(f"#### Profile: {name}, {t.label}\n\n{summary}")
    finally:
        version = database.version() if database is not None else None
        if database is not None:
            database.drop()
    run = DatabaseRun(name, targets, results, rate_headers, server_version=version)
    run.profiles = profiles
    if database is not None:
        log(f"{name}: counting round trips and statements per request")
        run.traces, run.triggers_per_create = trace_statements(POSTGRES_ADMIN_URL)
    return run


def run(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print(
            "bench/api.py needs the `wrk` load generator, which is not installed.\n"
            "Install it with:  apt-get update && apt-get install -y wrk   (or: brew install wrk)",
            file=sys.stderr,
        )
        return 2

    pin, pin_note = (False, "disabled with --no-pin") if args.no_pin else pinning_available()
    server_prefix = ["taskset", "-c", str(SERVER_CPU)] if pin else []
    load = Load(
        threads=args.threads,
        connections=args.connections,
        duration=args.duration,
        wrk_prefix=["taskset", "-c", str(WRK_CPU)] if pin else [],
    )
    log(f"pinning: {pin_note if pin else 'not used: ' + pin_note}")

    if WORK_DIR.exists():
        shutil.rmtree(WORK_DIR)
    WORK_DIR.mkdir(parents=True)

    servers: list[Server] = []
    runs: list[DatabaseRun] = []
    with servers_stopped(servers):
        bare_port = free_port()
        this_script = str(Path(__file__).resolve())
        bare = start_server(
            "bare",
            [*server_prefix, sys.executable, this_script, "--serve-bare", str(bare_port)],
            bare_port,
            torale_env(WORK_DIR, bare_port),
            "/ping",
        )
        servers.append(bare)
        for name in args.databases.split(","):
            runs.append(
                run_database(
                    name, bare=bare, load=load, server_prefix=server_prefix, pin=pin, args=args
                )
            )
    if pin:
        pin_note += "; verified with sched_getaffinity"
    environ = environment(pin, pin_note)
    section = render_section(
        runs=runs, load=load, rounds=args.rounds, warmup=args.warmup, env=environ
    )
    write_section("api", section)
    print()
    print(section)
    log(f"wrote {RESULTS_FILE.relative_to(REPO_DIR)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per target (default 3).")
    parser.add_argument("--duration", type=int, default=10, help="Seconds per wrk run.")
    parser.add_argument("--warmup", type=int, default=3, help="Warm-up seconds per target.")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (-c).")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (-t).")
    parser.add_argument("--no-pin", action="store_true", help="Do not pin with taskset.")
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="Which databases, comma-separated (default: sqlite,postgresql).",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="After the rounds, profile the Torale server with py-spy under each load.",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
