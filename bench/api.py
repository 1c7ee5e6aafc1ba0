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
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import RESULTS_FILE, cpu_ticks, free_port, section_markers, write_section

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work" / "api"

RATE_LIMITS = "100000000/minute"
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
    before = CpuSnapshot.take(target.server.pid)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    after = CpuSnapshot.take(target.server.pid)
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


def torale_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
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
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).splitlines()[0].split("Copyright")[0].strip()
    git = ["git", "-C", str(REPO_DIR)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        ("Date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{cpu}, {os.cpu_count()} CPUs"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Packages", ", ".join(versions)),
        ("Load generator", wrk_version),
        ("Pinning", pin_note if pinned else f"not used ({pin_note})"),
        ("Torale", f"commit {commit or '?'}" + (" + uncommitted changes in src/" if dirty else "")),
    ]


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def render_section(
    *,
    targets: list[Target],
    results: dict[str, list[WrkResult]],
    load: Load,
    rounds: int,
    warmup: int,
    env: list[tuple[str, str]],
    rate_headers: dict[str, str],
    profile: str | None,
) -> str:
    med: dict[str, dict[str, float]] = {}
    for t in targets:
        runs = results[t.key]
        med[t.key] = {
            "rps": statistics.median(r.rps for r in runs),
            "p50": statistics.median(r.p50_ms for r in runs),
            "p90": statistics.median(r.p90_ms for r in runs),
            "p99": statistics.median(r.p99_ms for r in runs),
            "cpu": statistics.median(r.server_cpu for r in runs),
            "cpu_us": statistics.median(r.cpu_us for r in runs),
            "main_us": statistics.median(r.main_cpu_us for r in runs),
            "bytes": statistics.median(r.bytes_per_response for r in runs),
        }
    bare = med["bare"]["rps"]
    list_ratio = med["list"]["rps"] / bare
    create_ratio = med["create"]["rps"] / bare
    verdict = "met" if list_ratio >= GOAL_RATIO else "NOT met"

    out = [SECTION_START, "## API throughput (`bench/api.py`)", ""]
    out += [
        f"Goal: authenticated `GET /api/v1/tasks` (page of {LIST_TASKS}) at ≥ "
        f"{GOAL_RATIO:.0%} of a bare FastAPI endpoint's throughput. "
        f"**Result: {list_ratio:.1%} — goal {verdict}.**",
        "",
        f"Load: `wrk -t{load.threads} -c{load.connections} -d{load.duration}s --latency`, "
        f"{warmup} s warm-up per target, {rounds} rounds interleaved "
        "(bare → list → routed → uncached → create in each round); the table shows the "
        "median of the rounds. "
        "Each target is served by one uvicorn process (uvloop + httptools, access log on, "
        "written to a file), SQLite in a fresh data directory.",
        "",
        "| Target | req/s | p50 | p90 | p99 | server CPU | CPU/request | vs bare |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in targets:
        m = med[t.key]
        ratio = "1.00" if t.key == "bare" else f"{m['rps'] / bare:.2f} ({m['rps'] / bare:.1%})"
        out.append(
            f"| {t.label} | {m['rps']:,.0f} | {fmt_ms(m['p50'])} | {fmt_ms(m['p90'])} | "
            f"{fmt_ms(m['p99'])} | {m['cpu']:.0%} | {m['cpu_us']:,.0f} µs | {ratio} |"
        )
    out += [
        "",
        f"- **torale-list / bare = {list_ratio:.2f}** ({list_ratio:.1%}); "
        f"**torale-create / bare = {create_ratio:.2f}** ({create_ratio:.1%}).",
        "- How a list request is answered: pages are cached keyed by the owner's "
        "`tasks_version`, which database triggers move on every write to the user's tasks, so "
        "a cached page is exactly what a query would return. A cached page with a plain query "
        "is answered before FastAPI routing (`torale/tasks/list_fast_path.py`), after the same "
        "key check, deactivation check and rate-limit count as the route. The *routed* row is "
        "the same cached page through FastAPI's routing and dependencies (an unknown query "
        "parameter hands the request to the route); the *uncached* row is a second server on "
        "the same database with `TORALE_TASK_LIST_CACHE_BYTES=0`, which queries and serialises "
        "every time (what the first request after each write costs).",
        "- Server CPU: the server process's CPU time over the run's wall time (100% = one core "
        "busy). CPU/request: that CPU time divided by the requests served; of it, the main "
        "(event-loop) thread used "
        + ", ".join(f"{t.key} {med[t.key]['main_us']:,.0f} µs" for t in targets)
        + " (the rest is aiosqlite's per-connection threads).",
        f"- Rate limiting was on and exercised on every authenticated request, with "
        f'`TORALE_RATE_LIMITS="{RATE_LIMITS}"` so it never refuses '
        "(a sample response carried "
        f"`X-RateLimit-Limit: {rate_headers.get('x-ratelimit-limit', '?')}`, "
        f"`X-RateLimit-Remaining: {rate_headers.get('x-ratelimit-remaining', '?')}`). "
        "Every run had 0 non-2xx responses and 0 socket errors (the script fails otherwise).",
        f"- Response sizes (incl. headers): bare {med['bare']['bytes']:.0f} B, "
        f"list {med['list']['bytes']:,.0f} B, create {med['create']['bytes']:,.0f} B.",
        "- The create benchmark uses a second user, so the listed user keeps exactly "
        f"{LIST_TASKS} tasks; created tasks accumulate in the same SQLite file across rounds.",
        "",
        "Per round (req/s · p99):",
        "",
        "| Target | " + " | ".join(f"round {i + 1}" for i in range(rounds)) + " |",
        "|---|" + "---:|" * rounds,
    ]
    for t in targets:
        cells = [f"{r.rps:,.0f} · {fmt_ms(r.p99_ms)}" for r in results[t.key]]
        out.append(f"| {t.label} | " + " | ".join(cells) + " |")
    out += [
        "",
        "For context: the hosted service's published 0.0.2 backend, measured on this kind of "
        "machine with the same kind of load, served an API-key list of 20 tasks at about "
        f"{HOSTED_LIST_RPS / HOSTED_BARE_RPS:.0%} of a bare FastAPI endpoint "
        f"(≈ {HOSTED_LIST_RPS:,} vs ≈ {HOSTED_BARE_RPS:,} req/s, p99 {HOSTED_LIST_P99_MS} ms). "
        "Those figures were reported with the task, not re-measured by this script.",
        "",
        "Environment:",
        "",
    ]
    out += [f"- {name}: {value}" for name, value in env]
    if profile:
        out += ["", "### Profile of the Torale server under the list load", "", profile]
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
    data_dir = WORK_DIR / "data"

    servers: list[Server] = []
    with servers_stopped(servers):
        torale_port = free_port()
        env = torale_env(data_dir, torale_port)
        log(f"data dir {data_dir}; creating two API keys (migrates the database)")
        list_key = create_key(env, "lister@bench.invalid")
        create_key_ = create_key(env, "creator@bench.invalid")

        def start_torale(name: str, port: int, extra_env: dict[str, str]) -> Server:
            command = [*server_prefix, sys.executable, "-m", "torale", "serve"]
            command += ["--host", "127.0.0.1", "--port", str(port)]
            server = start_server(
                name, command, port, {**torale_env(data_dir, port), **extra_env}, "/health"
            )
            servers.append(server)
            return server

        torale = start_torale("torale", torale_port, {})
        bare_port = free_port()
        this_script = str(Path(__file__).resolve())
        bare = start_server(
            "bare",
            [*server_prefix, sys.executable, this_script, "--serve-bare", str(bare_port)],
            bare_port,
            env,
            "/ping",
        )
        servers.append(bare)
        # The same database, the list cache off: every list request queries and serialises.
        nocache = start_torale(
            "torale-nocache",
            free_port(),
            {"TORALE_TASK_LIST_CACHE_BYTES": "0", "TORALE_MIGRATE_ON_START": "false"},
        )
        if pin:
            for server in servers:
                affinity = os.sched_getaffinity(server.pid)
                if affinity != {SERVER_CPU}:
                    raise RuntimeError(f"{server.name} server runs on CPUs {affinity}")
            pin_note += "; verified with sched_getaffinity"
        log(f"servers up: torale pid {torale.pid}, bare pid {bare.pid}")

        rate_headers = seed_tasks(torale, list_key)
        if "x-ratelimit-limit" not in rate_headers:
            raise RuntimeError("no X-RateLimit-* headers on the list response")
        log(f"seeded {LIST_TASKS} tasks")

        targets = [
            Target(
                "bare",
                "bare FastAPI `GET /ping`",
                bare,
                "/ping",
                lua_script(WORK_DIR / "bare.lua", token=None, method="GET"),
            ),
            Target(
                "list",
                f"Torale `GET /api/v1/tasks` ({LIST_TASKS} tasks, API key)",
                torale,
                "/api/v1/tasks",
                lua_script(WORK_DIR / "list.lua", token=list_key, method="GET"),
            ),
            Target(
                "routed",
                "… the same page through FastAPI routing (`?via=route`)",
                torale,
                "/api/v1/tasks?via=route",
                lua_script(WORK_DIR / "list.lua", token=list_key, method="GET"),
            ),
            Target(
                "uncached",
                "… with the list cache off (query + serialise each time)",
                nocache,
                "/api/v1/tasks",
                lua_script(WORK_DIR / "list.lua", token=list_key, method="GET"),
            ),
            Target(
                "create",
                "Torale `POST /api/v1/tasks` (API key)",
                torale,
                "/api/v1/tasks",
                lua_script(
                    WORK_DIR / "create.lua", token=create_key_, method="POST", body=TASK_BODY
                ),
            ),
        ]

        if args.warmup > 0:
            for t in targets:
                log(f"warm-up {args.warmup}s: {t.key}")
                run_wrk(t, load, args.warmup)

        results: dict[str, list[WrkResult]] = {t.key: [] for t in targets}
        for round_no in range(1, args.rounds + 1):
            for t in targets:
                result = run_wrk(t, load, load.duration)
                (WORK_DIR / f"wrk-{t.key}-{round_no}.txt").write_text(result.raw)
                if result.non_2xx or result.socket_errors:
                    raise RuntimeError(
                        f"{t.key}: {result.non_2xx} non-2xx responses, "
                        f"{result.socket_errors} socket errors; see {WORK_DIR}"
                    )
                results[t.key].append(result)
                log(
                    f"round {round_no} {t.key:>6}: {result.rps:>9,.0f} req/s  "
                    f"p50 {fmt_ms(result.p50_ms):>9}  p99 {fmt_ms(result.p99_ms):>9}  "
                    f"server CPU {result.server_cpu:.0%}, {result.cpu_us:,.0f} µs/request "
                    f"({result.main_cpu_us:,.0f} on the event loop)"
                )

        profile = None
        if args.profile > 0:
            profile = profile_target(targets[1], load, args.profile, pin)

        section = render_section(
            targets=targets,
            results=results,
            load=load,
            rounds=args.rounds,
            warmup=args.warmup,
            env=environment(pin, pin_note),
            rate_headers=rate_headers,
            profile=profile,
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
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="After the rounds, profile the Torale server with py-spy under the list load.",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
