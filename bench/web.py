"""Server-side rendering must not become the slow path: the tasks page of a user with 100 tasks
and a task page with 50 executions, against the JSON task list route, served by one `torale
serve` process in the same run. Goal: each page at >= 50% of the JSON route's requests/s.

Run it as `.venv/bin/python bench/web.py` (needs `wrk`: apt-get install -y wrk). Writes the
`web` section of bench/RESULTS.md. `--profile SECONDS` also records each page under load with
py-spy (stacks in bench/.work/web/).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx

from common import cpu_ticks, free_port, write_section

TASKS = 100
EXECUTIONS = 50
CONNECTIONS = 16
GOAL = 0.5
SERVER_CPU, WRK_CPU = 0, 1
WORK_DIR = Path(__file__).resolve().parent / ".work" / "web"


@dataclass
class Target:
    name: str
    label: str
    path: str
    headers: dict[str, str]


@dataclass
class Result:
    rps: float
    cpu_us: float  # server process CPU time per request (all threads)
    p99_ms: float


def log(message: str) -> None:
    print(message, flush=True)


def run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def pinned() -> bool:
    return (
        shutil.which("taskset") is not None
        and hasattr(os, "sched_getaffinity")
        and {SERVER_CPU, WRK_CPU} <= os.sched_getaffinity(0)
    )


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(base_url: str, target: Target, pid: int, seconds: int, pin: bool) -> Result:
    script = WORK_DIR / f"{target.name}.lua"
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items()]
    script.write_text("\n".join(lines) + "\n")
    prefix = ["taskset", "-c", str(WRK_CPU)] if pin else []
    before = cpu_ticks(pid)
    done = subprocess.run(
        [
            *prefix,
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            base_url + target.path,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    ticks = cpu_ticks(pid) - before
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    count = re.search(r"(\d+) requests in", done.stdout)
    p99 = re.search(r"^\s+99%\s+(\S+)", done.stdout, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if not found or not count or not p99 or errors:
        raise RuntimeError(f"wrk on {target.path}:\n{done.stdout}")
    requests = int(count.group(1))
    cpu_us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(requests, 1)
    return Result(float(found.group(1)), cpu_us, _ms(p99.group(1)))


def profile(pid: int, base_url: str, target: Target, seconds: int, pin: bool) -> Path:
    """py-spy stacks of the server while wrk loads one target."""
    py_spy = Path(sys.executable).with_name("py-spy")
    out = WORK_DIR / f"profile-{target.name}.txt"
    script = str(WORK_DIR / f"{target.name}.lua")
    prefix = ["taskset", "-c", str(WRK_CPU)] if pin else []
    url = base_url + target.path
    load = subprocess.Popen(
        [*prefix, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds + 4}s", "-s", script, url],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1)
    record = [str(py_spy), "record", "-p", str(pid), "-d", str(seconds), "-r", "250"]
    subprocess.run([*record, "-f", "raw", "-o", str(out)], capture_output=True, check=True)
    load.wait(timeout=seconds + 60)
    return out


def seed_executions(database: Path, task_id: str, user_id: str) -> None:
    """50 finished runs of one task (a third of them notified a webhook), written straight
    into its SQLite database."""
    import asyncio

    from torale.db.database import create_engine, create_sessionmaker
    from torale.db.models import Delivery, DeliveryAttempt, Execution
    from torale.statuses import DeliveryStatus, ExecutionStatus, Trigger

    async def write() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        now = datetime.now(UTC)
        async with create_sessionmaker(engine)() as session:
            for index in range(EXECUTIONS):
                when = now - timedelta(hours=index)
                met = index % 3 == 0
                run = Execution(
                    id=uuid.uuid4(),
                    task_id=uuid.UUID(task_id),
                    user_id=uuid.UUID(user_id),
                    status=ExecutionStatus.SUCCESS,
                    trigger=Trigger.SCHEDULE,
                    created_at=when,
                    started_at=when,
                    completed_at=when + timedelta(seconds=9),
                    condition_met=met,
                    change_summary="The release date was announced." if met else None,
                    notification="The release date was announced." if met else None,
                    result={
                        "answer": f"Answer number {index}",
                        "condition_met": met,
                        "current_state": {"n": index},
                        "reasoning": "Read from the newsroom.",
                        "confidence": 0.9,
                    },
                    grounding_sources=[
                        {"url": "https://www.apple.com/newsroom/", "title": "Apple Newsroom"}
                    ],
                    usage={"input_tokens": 900, "output_tokens": 80, "llm_calls": 1},
                )
                session.add(run)
                if met:
                    await session.flush()
                    delivery = Delivery(
                        id=uuid.uuid4(),
                        execution_id=run.id,
                        task_id=run.task_id,
                        user_id=run.user_id,
                        channel_index=0,
                        channel_type="webhook",
                        channel={"type": "webhook", "url": "https://hooks.example.com/in"},
                        payload={},
                        status=DeliveryStatus.DELIVERED,
                        attempts=1,
                    )
                    session.add(delivery)
                    await session.flush()
                    session.add(
                        DeliveryAttempt(
                            delivery_id=delivery.id,
                            user_id=run.user_id,
                            task_id=run.task_id,
                            attempted_at=when + timedelta(seconds=10),
                            success=True,
                            status_code=200,
                            duration_ms=40,
                        )
                    )
            await session.commit()
        await engine.dispose()

    asyncio.run(write())


def start(
    torale: list[str], port: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    log_file = (WORK_DIR / "serve.log").open("ab")
    server = subprocess.Popen(
        [*torale, "serve", "--port", str(port)],
        env=env,
        cwd=WORK_DIR,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    return server, log_file


def stop(server: subprocess.Popen[bytes], log_file: IO[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    server.wait(timeout=20)
    log_file.close()


def measure(
    base_url: str, targets: list[Target], pid: int, rounds: int, seconds: int, pin: bool
) -> dict[str, list[Result]]:
    for target in targets:  # warm-up: the caches filled, the code paths hot
        wrk(base_url, target, pid, 2, pin)
    results: dict[str, list[Result]] = {t.name: [] for t in targets}
    for round_ in range(rounds):
        for target in targets:
            result = wrk(base_url, target, pid, seconds, pin)
            results[target.name].append(result)
            log(
                f"round {round_ + 1}: {target.name:<12} {result.rps:8.0f} req/s "
                f"{result.cpu_us:8.0f} µs CPU/request  p99 {result.p99_ms:.1f} ms"
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    parser.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", "8")))
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    pin = pinned() and not args.no_pin
    if WORK_DIR.exists():
        shutil.rmtree(WORK_DIR)
    WORK_DIR.mkdir(parents=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    env.update(
        TORALE_DATA_DIR=str(WORK_DIR),
        TORALE_RATE_LIMITS="100000000/minute",
        TORALE_LOG_LEVEL="warning",
        TORALE_PUBLIC_URL=base_url,
        TORALE_SEARCH_PROVIDER="none",
        # Model tasks need a model configured to be accepted; none of them runs here.
        TORALE_MODEL="bench-model",
        TORALE_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )
    torale = [sys.executable, "-m", "torale"]
    served = [*(["taskset", "-c", str(SERVER_CPU)] if pin else []), *torale]
    key = run([*torale, "keys", "create", "--email", "bench@example.com"], env, WORK_DIR)
    server, log_file = start(served, port, env)
    profiles: list[Path] = []
    try:
        auth = {"Authorization": f"Bearer {key}"}
        first = None
        for index in range(TASKS):
            body = {
                "name": f"Watch {index}",
                "search_query": f"product launch number {index}",
                "condition_description": "The launch date is announced",
                "urls": ["https://www.example.com/news"],
                "schedule": "0 9 * * *",
                "timezone": "Europe/Berlin",
            }
            made = httpx.post(base_url + "/api/v1/tasks", json=body, headers=auth).json()
            first = first or made
        assert first is not None
        seed_executions(WORK_DIR / "torale.db", first["id"], first["user_id"])
        link = run([*torale, "signin-link", "--email", "bench@example.com"], env, WORK_DIR)
        signed = httpx.get(link, follow_redirects=False)
        cookie = signed.cookies["torale_session"]
        browser = {"Cookie": f"torale_session={cookie}"}
        targets = [
            Target(
                "json",
                f"`GET /api/v1/tasks?limit=100` (JSON, {TASKS} tasks)",
                "/api/v1/tasks?limit=100",
                auth,
            ),
            Target(
                "tasks_page", f"`GET /tasks` (HTML, {TASKS} tasks, 50 a page)", "/tasks", browser
            ),
            Target(
                "task_page",
                f"`GET /tasks/{{id}}` (HTML, {EXECUTIONS} executions, 20 shown)",
                f"/tasks/{first['id']}",
                browser,
            ),
        ]
        page = httpx.get(base_url + "/tasks", headers=browser).text
        assert page.count('class="task-row"') == 50, "the tasks page shows 50 a page"
        task_page = httpx.get(base_url + targets[2].path, headers=browser).text
        assert task_page.count("webhook: delivered (200)") == 7, "20 runs shown, 7 notified"
        results = measure(base_url, targets, server.pid, args.rounds, args.duration, pin)
        if args.profile:
            profiles = [profile(server.pid, base_url, t, args.profile, pin) for t in targets[1:]]
    finally:
        stop(server, log_file)
    # For context: what a miss costs, every cache off (each answer queried and rendered).
    server, log_file = start(
        served,
        port,
        env | {"TORALE_TASK_LIST_CACHE_BYTES": "0", "TORALE_PAGE_CACHE_BYTES": "0"},
    )
    try:
        uncached = measure(base_url, targets, server.pid, 1, args.duration, pin)
    finally:
        stop(server, log_file)

    def median(name: str, runs: dict[str, list[Result]] = results) -> Result:
        values = runs[name]
        return Result(
            statistics.median(r.rps for r in values),
            statistics.median(r.cpu_us for r in values),
            statistics.median(r.p99_ms for r in values),
        )

    json_rps = median("json").rps
    rows = []
    for target in targets:
        m = median(target.name)
        ratio = m.rps / json_rps
        verdict = "" if target.name == "json" else (" ✓" if ratio >= GOAL else " ✗ below goal")
        runs = ", ".join(f"{r.rps:,.0f}" for r in results[target.name])
        rows.append(
            f"| {target.label} | {m.rps:,.0f} | {m.cpu_us:,.0f} µs | {m.p99_ms:.1f} ms | "
            f"{ratio:.2f}{verdict} | {runs} |"
        )
    for target in targets:
        m = median(target.name, uncached)
        rows.append(
            f"| … {target.label.split(' (')[0]} with every cache off (a miss, for context) | "
            f"{m.rps:,.0f} | {m.cpu_us:,.0f} µs | {m.p99_ms:.1f} ms | {m.rps / json_rps:.2f} "
            "| 1 round |"
        )
    met = all(median(t.name).rps / json_rps >= GOAL for t in targets)
    section = "\n".join(
        [
            "<!-- bench:web:start -->",
            "## Web pages against the JSON list (`bench/web.py`)",
            "",
            f"Goal: each page at ≥ {GOAL:.0%} of the JSON route's requests/s, in the same run. "
            f"**Result: tasks page {median('tasks_page').rps / json_rps:.2f}, task page "
            f"{median('task_page').rps / json_rps:.2f} — goal {'met' if met else 'NOT met'}.**",
            "",
            f"One `torale serve` process (SQLite, log level warning), wrk -t1 -c{CONNECTIONS}, "
            f"{args.duration} s per target after a 2 s warm-up, {args.rounds} rounds interleaved, "
            "median shown; "
            + (
                f"server pinned to CPU {SERVER_CPU}, wrk to CPU {WRK_CPU}"
                if pin
                else "nothing pinned"
            )
            + ". CPU/request: the server process's CPU time (all threads) over the requests "
            f"served. Measured {datetime.now(UTC):%Y-%m-%d} on a shared 2-core machine (other "
            "people's work competes for the CPUs, so req/s move between rounds; the CPU per "
            "request is steadier).",
            "",
            "| Target | req/s | CPU/request | p99 | vs JSON | rounds (req/s) |",
            "|---|---:|---:|---:|---:|---|",
            *rows,
            "",
            "Both pages are answered from the page cache (`torale/web/page_cache.py`) by the "
            "page fast path (`torale/web/page_fast_path.py`) before FastAPI routing: a session "
            "lookup cached like the API key lookup (exact by `PRAGMA data_version`), a "
            "dictionary lookup, the session's CSRF token joined in. The last rows are a second "
            "server on the same database with `TORALE_TASK_LIST_CACHE_BYTES=0` and "
            "`TORALE_PAGE_CACHE_BYTES=0`: every answer queried and rendered (what the first "
            "request after a change costs). Where the CPU went before and after: "
            "`docs/performance.md`.",
            "<!-- bench:web:end -->",
            "",
        ]
    )
    write_section("web", section)
    log(section)
    for path in profiles:
        log(f"py-spy stacks: {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
