"""Memory benchmark: the RSS of one `torale serve` process, idle and holding 10,000 tasks.

Run it as `.venv/bin/python bench/memory.py` (or `make bench-memory`). It starts `torale serve`
(SQLite in a fresh data directory under bench/.work/memory, the embedded scheduler running),
reads its RSS from /proc once it is idle, then creates 10,000 tasks through the API (half of
them active, their first runs due tomorrow), pages through all of them, lets the scheduler tick,
and reads the RSS again, with its peak (VmHWM). A bare FastAPI app on the same uvicorn stack is
measured in the same run as a baseline. Goals: <= 150 MB idle, <= 250 MB with 10,000 tasks.
Results go to the `bench:memory` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import free_port, section_markers, write_section

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work" / "memory"
START, END = section_markers("memory")
TASKS = 10_000
GOAL_IDLE_MB, GOAL_LOADED_MB = 150, 250
BARE_APP = """
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
app = FastAPI()
@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
@app.get("/page", response_class=HTMLResponse)
async def page() -> str:
    text = "Nothing announced yet. " * 50
    return f"<html><body><article><h1>News</h1><p>{text}</p></article></body></html>"
"""


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, peak / 1024


def request(url: str, key: str | None = None, body: object = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - local server
    with urllib.request.urlopen(req, timeout=60) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {WORK}")
        try:
            request(url)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def settle(pid: int, seconds: float = 3.0) -> tuple[float, float]:
    time.sleep(seconds)
    return memory_mb(pid)


def run() -> str:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    port = free_port()
    env |= {
        "TORALE_DATA_DIR": str(WORK / "data"),
        "TORALE_PORT": str(port),
        "TORALE_RATE_LIMITS": "100000000/minute",
        "TORALE_LOG_LEVEL": "warning",
        # For the last step: read a local page, ask a model that is not there (the point is
        # the libraries a run loads, not the verdict).
        "TORALE_ALLOW_PRIVATE_NETWORKS": "true",
        "TORALE_MODEL": "bench-model",
        "TORALE_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "TORALE_PROVIDER_RETRIES": "0",
    }
    log = (WORK / "torale.log").open("wb")
    torale = subprocess.Popen(
        [sys.executable, "-m", "torale", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    (WORK / "bare.py").write_text(BARE_APP)
    bare_port = free_port()
    bare = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare:app",
            "--port",
            str(bare_port),
            "--log-level",
            "warning",
        ],
        cwd=WORK,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/health", torale)
        wait_until_up(f"http://127.0.0.1:{bare_port}/ping", bare)
        key_match = None
        for _ in range(50):
            key_match = re.search(r"\bsk_[A-Za-z0-9_-]{43}\b", (WORK / "torale.log").read_text())
            if key_match:
                break
            time.sleep(0.1)
        assert key_match, "no bootstrap key printed"
        key = key_match.group(0)
        request(base + "/api/v1/tasks", key)  # one authenticated request: all code paths warm
        bare_idle = settle(bare.pid)
        idle = settle(torale.pid)

        started = time.perf_counter()
        for i in range(TASKS):
            request(
                base + "/api/v1/tasks",
                key,
                {
                    "search_query": f"benchmark query {i}",
                    "name": f"task {i}",
                    "schedule": "0 9 * * *",
                    "state": "active" if i % 2 else "paused",
                    "notifications": [{"type": "email", "address": f"user{i}@example.com"}],
                },
            )
        created_s = time.perf_counter() - started
        seen = 0
        for page in range(1, TASKS // 100 + 1):
            listing = request(f"{base}/api/v1/tasks?page={page}&limit=100", key)
            seen += len(listing["items"])  # type: ignore[index]
        assert seen == TASKS, seen
        loaded = settle(torale.pid, 5.0)
        try:
            request(
                base + "/api/v1/tasks/preview",
                key,
                {
                    "search_query": "memory benchmark",
                    "urls": [f"http://127.0.0.1:{bare_port}/page"],
                    "config": {"search_provider": "none"},
                },
            )
        except urllib.error.HTTPError as error:
            if error.code != 502:  # 502: the model is not there, as intended
                raise
        engine_loaded = settle(torale.pid)
    finally:
        for process in (torale, bare):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    heaviest = max(loaded[0], engine_loaded[0])
    verdict = "met" if idle[0] <= GOAL_IDLE_MB and heaviest <= GOAL_LOADED_MB else "NOT met"
    lines = [
        START,
        "## Memory (`bench/memory.py`)",
        "",
        f"Goal: <= {GOAL_IDLE_MB} MB idle and <= {GOAL_LOADED_MB} MB with {TASKS:,} tasks. "
        f"**Result: {idle[0]:.0f} MB idle, {heaviest:.0f} MB at most with {TASKS:,} tasks — "
        f"goal {verdict}.**",
        "",
        "One `torale serve` process (SQLite, embedded scheduler and dispatcher running), RSS from "
        "/proc after a few seconds of quiet; peak is VmHWM (the most it ever held).",
        "",
        "| Process | RSS | peak RSS |",
        "|---|---:|---:|",
        f"| bare FastAPI app, same uvicorn stack | {bare_idle[0]:.0f} MB | {bare_idle[1]:.0f} MB |",
        f"| Torale, idle (after one authenticated request) | {idle[0]:.0f} MB | {idle[1]:.0f} MB |",
        f"| Torale, {TASKS:,} tasks created through the API and listed | {loaded[0]:.0f} MB "
        f"| {loaded[1]:.0f} MB |",
        f"| … and after a run (page read, model called: the engine's libraries loaded) "
        f"| {engine_loaded[0]:.0f} MB | {engine_loaded[1]:.0f} MB |",
        "",
        f"- Torale idle / bare: {idle[0] / bare_idle[0]:.2f}x. Creating {TASKS:,} tasks through "
        f"the API took {created_s:.0f} s (one client, sequential), half of them active (the "
        "scheduler keeps looking at their next runs); every page of the list was read.",
        "- Heavy libraries (pydantic-ai and the provider SDKs, trafilatura) load on the first "
        "run that needs them: the last row is a process that has run (a preview reading an HTML "
        "page and calling a model endpoint, which is absent on purpose).",
        f"- Environment: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.system()} "
        f"{platform.release()}.",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-write", action="store_true", help="Print, do not write RESULTS.md.")
    args = parser.parse_args()
    section = run()
    print(section)
    if not args.no_write:
        write_section("memory", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
