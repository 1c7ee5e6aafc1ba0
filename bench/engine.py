"""Change-aware cost saver benchmark: model calls with and without reusing unchanged verdicts.

Run it as `.venv/bin/python bench/engine.py` (or `make bench-engine`). It replays a recorded,
deterministic sequence of page versions (`bench/engine_replay.json`: 20 tasks x 30 runs) twice,
against local stand-ins for the internet (the fakes of `tests/fakes`: a website, a SearXNG and an
OpenAI-compatible model whose verdict depends only on the page text), each time on a fresh SQLite
database: once with `reuse_unchanged_verdicts` on, once off. Every run goes through
`torale.engine.run.run_execution`, in process. It reports how often the model was called and
checks that both passes notified identically (exit 1 if not). Results go to the engine section
of bench/RESULTS.md; see bench/README.md.

`bench/engine.py --record` regenerates the replay file from its fixed seed (see `record`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import re
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))  # for the local fakes in tests/fakes

from sqlalchemy import select  # noqa: E402
from tests.fakes import (  # noqa: E402
    ChatRequest,
    FakeOpenAI,
    FakeSearxng,
    FakeWeb,
    Reply,
    ToolCall,
    article_html,
)

from common import RESULTS_FILE, section_markers, write_section  # noqa: E402
from common import environment as common_environment  # noqa: E402
from torale.auth.service import create_user  # noqa: E402
from torale.config import Settings  # noqa: E402
from torale.db.database import create_engine, create_sessionmaker, session_scope  # noqa: E402
from torale.db.migrate import upgrade  # noqa: E402
from torale.db.models import Delivery, Execution, Task  # noqa: E402
from torale.engine.run import Engine, run_execution  # noqa: E402
from torale.statuses import Trigger  # noqa: E402
from torale.tasks.schemas import TaskCreate  # noqa: E402
from torale.tasks.service import TaskPolicy, create_task  # noqa: E402

WORK_DIR = BENCH_DIR / ".work" / "engine"
REPLAY_FILE = BENCH_DIR / "engine_replay.json"

SEED = 20261129
TASKS = 20
RUNS = 30
SEARCH_TASKS = 5  # found through the (fake) SearXNG; the others read their `urls`
TWO_PAGE_URL_TASKS = 3  # url tasks that watch a second page besides the status page
GOAL_SHARE = 0.25  # at most this share of runs may call the model with the saver on
MODEL = "fake-model"
CONCURRENCY = 4  # runs of one round at the same time, like TORALE_WORKER_CONCURRENCY's default

SECTION_START, SECTION_END = section_markers("engine")

PACKAGES = (
    "pydantic-ai-slim",
    "openai",
    "trafilatura",
    "httpx",
    "sqlalchemy",
    "aiosqlite",
    "pydantic",
    "uvicorn",
    "starlette",
)


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# The replay: what every page says on every run
# --------------------------------------------------------------------------------------------

PRODUCTS = (
    "Orion X2 camera",
    "Nimbus 7 e-reader",
    "Atlas Pro drone",
    "Vega S smartwatch",
    "Lumen 3 projector",
    "Kestrel bike computer",
    "Polaris mesh router",
    "Quasar 5 headphones",
    "Tundra 2 tent",
    "Cobalt mechanical keyboard",
    "Zephyr air purifier",
    "Helix espresso machine",
    "Aurora desk lamp",
    "Pulse fitness ring",
    "Summit trail shoes",
    "Echo Mini speaker",
    "Vertex gaming mouse",
    "Harbor smart lock",
    "Nova 9 tablet",
    "Ridge e-scooter",
)
FACTS = (
    "It weighs {n} grams and comes in three colours.",
    "The battery is rated for {n} hours of typical use.",
    "Early testers praised the build quality and the quiet operation.",
    "The maker plans a companion app for Android and iOS.",
    "A limited launch edition of {n} units is planned.",
    "The price has not changed since the first preview.",
    "Spare parts will be sold directly by the maker for {n} months.",
    "Firmware updates are promised for at least {n} years.",
)
UPDATES = (
    "Update: hands-on reviews from the trade fair are now online.",
    "Update: the maker published the full specification sheet.",
    "Update: a second colour option was added to the product page.",
    "Update: the support forum for the product opened today.",
    "Update: the maker answered questions in a live stream.",
    "Update: the user manual is available as a PDF.",
)
REVIEW_LINES = (
    "Reader review: solid, but the manual could be clearer.",
    "Reader review: worth the wait, the setup took five minutes.",
    "Reader review: great value, though the case scratches easily.",
    "Reader review: does what it says, nothing more.",
    "Reader review: my second one, the first still works.",
    "Reader review: support answered within a day.",
)
NOISE_KINDS = ("static", "server", "nav")
# static: unchanged bodies answer 304 to conditional requests; server: FakeWeb's `noise=True`
# (a fresh session id and timestamp in the nav and footer of every response, no ETag); nav: the
# page itself carries changing `nav_noise` (nav, aside, footer, scripts) on every run.


@dataclass(frozen=True)
class Version:
    from_run: int  # 1-based: the first run that reads this version
    paragraphs: list[str]
    note: str  # what changed, for people reading the replay file


@dataclass(frozen=True)
class PageSpec:
    id: str
    path: str
    title: str
    noise: str
    published: str
    versions: list[Version]

    def version_at(self, run: int) -> int:
        return max(i for i, v in enumerate(self.versions) if v.from_run <= run)

    def html(self, run: int) -> str:
        version = self.versions[self.version_at(run)]
        noise = ""
        if self.noise == "nav":
            digest = hashlib.sha256(f"{self.id}:{run}".encode()).hexdigest()
            noise = f"session {digest[:16]} · {int(digest[16:20], 16) % 900 + 100} readers online"
        return article_html(
            self.title, version.paragraphs, nav_noise=noise, published=self.published
        )


@dataclass(frozen=True)
class SearchHit:
    page: str
    title: str
    snippet: str


@dataclass(frozen=True)
class ReplayTask:
    name: str
    search_query: str
    condition: str
    notify_behavior: str
    via: str  # "urls" or "search"
    pages: list[str]
    results: list[SearchHit]


@dataclass(frozen=True)
class Replay:
    seed: int
    runs: int
    pages: dict[str, PageSpec]
    tasks: list[ReplayTask]

    def evidence_changed(self, task: ReplayTask, run: int, previous_run: int | None) -> bool:
        """Whether any page of the task has another version than at its previous run."""
        if previous_run is None:
            return True
        return any(
            self.pages[p].version_at(run) != self.pages[p].version_at(previous_run)
            for p in task.pages
        )


def _status_line(product: str, date: str | None) -> str:
    if date is None:
        return (
            f"Release status: not announced. The maker of the {product} says it will ship "
            "later this year."
        )
    return f"Release status: announced: {date}. Orders for the {product} open on that day."


def _date(rng: random.Random) -> str:
    return f"2027-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _facts(rng: random.Random, k: int) -> list[str]:
    return [f.format(n=rng.randint(2, 400)) for f in rng.sample(FACTS, k)]


def _change_runs(rng: random.Random, versions: int, runs: int) -> list[int]:
    return [1, *sorted(rng.sample(range(2, runs + 1), versions - 1))]


def _status_page(rng: random.Random, index: int, product: str, runs: int) -> PageSpec:
    slug = re.sub(r"[^a-z0-9]+", "-", product.lower()).strip("-")
    starts = _change_runs(rng, rng.choice((2, 3, 4)), runs)
    date: str | None = None if rng.random() < 0.8 else _date(rng)
    facts = _facts(rng, 2)
    updates: list[str] = []
    versions = [
        Version(
            1,
            [_status_line(product, date), *facts],
            "first version: " + ("not announced" if date is None else f"announced {date}"),
        )
    ]
    for start in starts[1:]:
        roll = rng.random()
        if date is None and roll < 0.75:
            date, note = _date(rng), "announced"
        elif date is not None and roll < 0.4:
            new = _date(rng)
            while new == date:
                new = _date(rng)
            date, note = new, "rescheduled"
        elif date is not None and roll < 0.6:
            date, note = None, "postponed (not announced again)"
        else:
            updates.append(rng.choice([u for u in UPDATES if u not in updates]))
            note = "edited: an update paragraph, same status"
        if date is not None and note != "edited: an update paragraph, same status":
            note += f" {date}"
        versions.append(Version(start, [_status_line(product, date), *facts, *updates], note))
    return PageSpec(
        id=f"p{index:02d}",
        path=f"/{slug}/news",
        title=f"{product}: release news",
        noise=rng.choices(NOISE_KINDS, weights=(2, 1, 1))[0],
        published=f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        versions=versions,
    )


def _review_page(rng: random.Random, index: int, product: str, runs: int) -> PageSpec:
    slug = re.sub(r"[^a-z0-9]+", "-", product.lower()).strip("-")
    starts = _change_runs(rng, rng.choice((2, 3)), runs)
    lines = rng.sample(REVIEW_LINES, len(starts) + 1)
    intro = f"What readers say about the {product}, collected by our editors."
    versions = [
        Version(start, [intro, *lines[: i + 2]], "first version" if i == 0 else "a new review")
        for i, start in enumerate(starts)
    ]
    return PageSpec(
        id=f"p{index:02d}",
        path=f"/{slug}/reviews",
        title=f"{product}: reader reviews",
        noise=rng.choices(NOISE_KINDS, weights=(2, 1, 1))[0],
        published=f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        versions=versions,
    )


def record(seed: int = SEED) -> dict[str, Any]:
    """The replay as JSON data: generated from `seed`, so re-recording gives the same file."""
    rng = random.Random(seed)
    behaviors = ["once"] * 6 + ["always"] * 7 + ["track_state"] * 7
    rng.shuffle(behaviors)
    search = set(rng.sample(range(TASKS), SEARCH_TASKS))
    url_tasks = [i for i in range(TASKS) if i not in search]
    two_page = set(rng.sample(url_tasks, TWO_PAGE_URL_TASKS))
    pages: list[PageSpec] = []
    tasks: list[dict[str, Any]] = []
    for i, product in enumerate(PRODUCTS[:TASKS]):
        status = _status_page(rng, len(pages) + 1, product, RUNS)
        pages.append(status)
        watched = [status]
        if i in search or i in two_page:
            review = _review_page(rng, len(pages) + 1, product, RUNS)
            pages.append(review)
            watched.append(review)
        via = "search" if i in search else "urls"
        tasks.append(
            {
                "name": f"{product} release date",
                "search_query": f"{product} release date",
                "condition": f"The release date of the {product} has been announced",
                "notify_behavior": behaviors[i],
                "via": via,
                "pages": [p.id for p in watched],
                "results": [
                    {"page": p.id, "title": p.title, "snippet": f"Latest on the {product}."}
                    for p in watched
                ]
                if via == "search"
                else [],
            }
        )
    return {
        "about": (
            "Recorded page versions for bench/engine.py, generated by `bench/engine.py --record` "
            "from the seed below. Each page shows versions[k] from run from_run (1-based) until "
            "the next version starts; `noise` says what changes on every fetch besides the "
            "readable text (static: nothing, 304s answer conditional requests; server: a fresh "
            "session id and timestamp in nav and footer, no ETag; nav: changing nav/aside/footer/"
            "script text in the page itself)."
        ),
        "seed": seed,
        "runs": RUNS,
        "pages": [
            {
                "id": p.id,
                "path": p.path,
                "title": p.title,
                "noise": p.noise,
                "published": p.published,
                "versions": [
                    {"from_run": v.from_run, "note": v.note, "paragraphs": v.paragraphs}
                    for v in p.versions
                ],
            }
            for p in pages
        ],
        "tasks": tasks,
    }


def load_replay(data: dict[str, Any]) -> Replay:
    pages = {
        p["id"]: PageSpec(
            id=p["id"],
            path=p["path"],
            title=p["title"],
            noise=p["noise"],
            published=p["published"],
            versions=[
                Version(int(v["from_run"]), list(v["paragraphs"]), str(v["note"]))
                for v in p["versions"]
            ],
        )
        for p in data["pages"]
    }
    tasks = [
        ReplayTask(
            name=t["name"],
            search_query=t["search_query"],
            condition=t["condition"],
            notify_behavior=t["notify_behavior"],
            via=t["via"],
            pages=list(t["pages"]),
            results=[SearchHit(r["page"], r["title"], r["snippet"]) for r in t["results"]],
        )
        for t in data["tasks"]
    ]
    for page in pages.values():
        if page.versions[0].from_run != 1 or page.noise not in NOISE_KINDS:
            raise ValueError(f"replay page {page.id} is malformed")
    return Replay(seed=int(data["seed"]), runs=int(data["runs"]), pages=pages, tasks=tasks)


# --------------------------------------------------------------------------------------------
# The model: a verdict that depends on the page text only
# --------------------------------------------------------------------------------------------

_SOURCE = re.compile(r'<source id="\d+" url="([^"]*)" title="[^"]*">\n(.*?)\n</source>', re.S)
_QUERY = re.compile(r"^Search query: (.*)$", re.M)
_STATUS = re.compile(r"Release status: (?:not announced|announced: (\d{4}-\d{2}-\d{2}))")


def _query_of(request: ChatRequest) -> str:
    """The search query a model request is about (every task of the replay has its own)."""
    match = _QUERY.search(request.prompt_text)
    if match is None:
        raise RuntimeError(f"model request {request.index} names no search query")
    return match.group(1)


def judge(request: ChatRequest) -> Reply:
    """'not announced' → not met; 'announced: <date>' → met with {"date": ...}.

    Only the text inside the prompt's <source> elements counts (never the earlier check the
    prompt also carries), so the same evidence always gets the same verdict.
    """
    for url, text in _SOURCE.findall(request.prompt_text):
        match = _STATUS.search(text)
        if match is None:
            continue
        date = match.group(1)
        if date is None:
            return ToolCall(
                {
                    "answer": "No release date has been announced yet.",
                    "condition_met": False,
                    "current_state": {"date": None},
                    "reasoning": "The product page says the date is not announced.",
                    "confidence": 0.9,
                    "sources": [url],
                }
            )
        return ToolCall(
            {
                "answer": f"The release date is {date}.",
                "condition_met": True,
                "current_state": {"date": date},
                "reasoning": "The product page names the release date.",
                "confidence": 0.95,
                "sources": [url],
            }
        )
    return ToolCall(
        {
            "answer": "The evidence does not mention a release date.",
            "condition_met": False,
            "current_state": {},
            "reasoning": "No source gives a release status.",
            "confidence": 0.5,
            "sources": [],
        }
    )


# --------------------------------------------------------------------------------------------
# One pass over the replay
# --------------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    task: int
    run: int
    status: str
    error: str | None
    llm_calls: int  # usage.llm_calls as recorded on the execution
    fake_calls: int  # requests the fake model received during the run
    input_tokens: int
    output_tokens: int
    reused: bool
    pages_fetched: int
    pages_not_modified: int
    evidence_changed: bool  # per the replay: a page of the task has a new version
    condition_met: bool | None
    result: dict[str, Any] | None
    notified: bool
    change_summary: str | None
    notification: str | None

    @property
    def called_model(self) -> bool:
        return self.fake_calls > 0


@dataclass
class PassResult:
    reuse: bool
    records: list[RunRecord]
    skipped: list[tuple[int, int]]  # (task, run) not run: the task was completed
    deliveries: list[tuple[Any, ...]]
    seconds: float
    fake_prompt_tokens: int
    fake_completion_tokens: int
    fake_calls: int
    web_requests: int
    searches: int
    final_states: dict[int, str] = field(default_factory=dict)

    @property
    def executed(self) -> int:
        return len(self.records)

    @property
    def model_calls(self) -> int:
        return sum(r.fake_calls for r in self.records)

    @property
    def runs_calling(self) -> int:
        return sum(r.called_model for r in self.records)

    def notifications(self) -> list[tuple[int, int, str | None, str | None]]:
        return [
            (r.task, r.run, r.change_summary, r.notification) for r in self.records if r.notified
        ]

    def verdicts(self) -> list[tuple[int, int, str, dict[str, Any] | None]]:
        return [(r.task, r.run, r.status, r.result) for r in self.records]


@dataclass
class Fakes:
    web: FakeWeb
    search: FakeSearxng
    model: FakeOpenAI


def _normal_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A delivery's event without what differs by construction (ids, times)."""
    data = payload.get("data", {})
    task = {k: v for k, v in data.get("task", {}).items() if k != "id"}
    execution = data.get("execution", {})
    return {
        "event_type": payload.get("event_type"),
        "api_version": payload.get("api_version"),
        "task": task,
        "execution": {
            "trigger": execution.get("trigger"),
            "notification": execution.get("notification"),
        },
        "result": data.get("result"),
        "context": data.get("context"),
    }


async def run_pass(replay: Replay, fakes: Fakes, *, reuse: bool, concurrency: int) -> PassResult:
    name = "saver-on" if reuse else "saver-off"
    data_dir = WORK_DIR / name
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    url = f"sqlite+aiosqlite:///{data_dir / 'torale.db'}"
    for fake in (fakes.web, fakes.search, fakes.model):
        fake.reset()

    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=url,
        secret_key="bench-engine",  # noqa: S106 (a throwaway database)
        model=MODEL,
        openai_base_url=fakes.model.url + "/v1",
        search_provider="none",
        searxng_url=fakes.search.url,
        allowed_networks="127.0.0.1/32",
        reuse_unchanged_verdicts=reuse,
        provider_retries=2,
        retry_backoff_seconds=0.05,
        fetch_timeout_seconds=10,
        model_timeout_seconds=30,
        run_timeout_seconds=60,
    )
    page_url = {p.id: fakes.web.url + p.path for p in replay.pages.values()}
    for spec in replay.tasks:
        if spec.results:
            fakes.search.set_results(
                spec.search_query, [(page_url[h.page], h.title, h.snippet) for h in spec.results]
            )

    await upgrade(url)
    db = create_engine(url)
    sessions = create_sessionmaker(db)
    write_lock = asyncio.Lock()
    engine = Engine.build(settings, sessions, write_lock)
    policy = TaskPolicy.from_settings(settings)
    ids: list[uuid.UUID] = []
    async with session_scope(sessions, write_lock) as session:
        user = await create_user(session, email="bench@example.com")
        for index, spec in enumerate(replay.tasks):
            body: dict[str, Any] = {
                "name": spec.name,
                "search_query": spec.search_query,
                "condition_description": spec.condition,
                "notify_behavior": spec.notify_behavior,
                "schedule": "0 * * * *",
                "notifications": [
                    {"type": "webhook", "url": f"https://hooks.example.com/bench/{index}"},
                    {"type": "email", "address": "bench@example.com"},
                ],
                "context": {"bench_task": index},
            }
            if spec.via == "urls":
                body["urls"] = [page_url[p] for p in spec.pages]
            else:
                body["config"] = {"search_provider": "searxng"}
            created = await create_task(
                session, user_id=user.id, data=TaskCreate.model_validate(body), policy=policy
            )
            ids.append(created.id)

    records: list[RunRecord] = []
    skipped: list[tuple[int, int]] = []
    where: dict[uuid.UUID, tuple[int, int]] = {}
    last_run: dict[int, int] = {}
    served: dict[str, str] = {}
    slots = asyncio.Semaphore(concurrency)

    async def one_run(task_id: uuid.UUID) -> Execution:
        async with slots:
            execution_id = await run_execution(engine, task_id, Trigger.SCHEDULE)
        if execution_id is None:
            raise RuntimeError(f"task {task_id}: nothing was run")
        async with sessions() as session:
            execution = await session.get(Execution, execution_id)
        assert execution is not None
        return execution

    started = time.perf_counter()
    try:
        for run in range(1, replay.runs + 1):
            for page in replay.pages.values():
                html = page.html(run)
                if served.get(page.id) != html:
                    fakes.web.set_page(page.path, html, noise=page.noise == "server")
                    served[page.id] = html
            async with sessions() as session:
                current = await session.execute(select(Task.id, Task.state))
                states = {task_id: state for task_id, state in current}
            due = [i for i, task_id in enumerate(ids) if states[task_id] == "active"]
            skipped += [(i, run) for i in range(len(ids)) if i not in due]  # scheduler: active only
            seen = len(fakes.model.chat_requests)
            executions = await asyncio.gather(*(one_run(ids[i]) for i in due))
            # Runs of a round overlap; each model request names its task's (unique) query.
            calls = Counter(_query_of(r) for r in fakes.model.chat_requests[seen:])
            for index, execution in zip(due, executions, strict=True):
                spec = replay.tasks[index]
                where[execution.id] = (index, run)
                usage = execution.usage or {}
                records.append(
                    RunRecord(
                        task=index,
                        run=run,
                        status=execution.status,
                        error=execution.error_message,
                        llm_calls=int(usage.get("llm_calls", 0)),
                        fake_calls=calls[spec.search_query],
                        input_tokens=int(usage.get("input_tokens", 0)),
                        output_tokens=int(usage.get("output_tokens", 0)),
                        reused=bool(usage.get("verdict_reused", False)),
                        pages_fetched=int(usage.get("pages_fetched", 0)),
                        pages_not_modified=int(usage.get("pages_not_modified", 0)),
                        evidence_changed=replay.evidence_changed(spec, run, last_run.get(index)),
                        condition_met=execution.condition_met,
                        result=execution.result,
                        notified=execution.notification is not None,
                        change_summary=execution.change_summary,
                        notification=execution.notification,
                    )
                )
                last_run[index] = run
        seconds = time.perf_counter() - started
        async with sessions() as session:
            rows = list(await session.scalars(select(Delivery)))
            final = {ids.index(t.id): str(t.state) for t in await session.scalars(select(Task))}
    finally:
        await engine.close()
        await db.dispose()
    deliveries = sorted(
        (
            *where[row.execution_id],
            row.channel_index,
            row.channel_type,
            row.status,
            json.dumps(_normal_payload(row.payload), sort_keys=True),
        )
        for row in rows
    )
    return PassResult(
        reuse=reuse,
        records=records,
        skipped=skipped,
        deliveries=deliveries,
        seconds=seconds,
        fake_prompt_tokens=fakes.model.total_prompt_tokens,
        fake_completion_tokens=fakes.model.total_completion_tokens,
        fake_calls=fakes.model.calls,
        web_requests=fakes.web.calls,
        searches=fakes.search.calls,
        final_states=final,
    )


# --------------------------------------------------------------------------------------------
# Checks and report
# --------------------------------------------------------------------------------------------


def _first_differences(a: Sequence[Any], b: Sequence[Any], limit: int = 5) -> list[str]:
    def show(items: Sequence[Any], i: int) -> str:
        text = repr(items[i]) if i < len(items) else "(none)"
        return text if len(text) <= 600 else text[:600] + "…"

    out = []
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b) or a[i] != b[i]:
            out.append(f"  #{i}: with saver {show(a, i)}\n       without     {show(b, i)}")
            if len(out) >= limit:
                break
    return out


def check(replay: Replay, on: PassResult, off: PassResult) -> tuple[list[str], list[str]]:
    """(failures, observations). Failures make the benchmark exit 1."""
    failures: list[str] = []
    notes: list[str] = []
    for result in (on, off):
        label = "with saver" if result.reuse else "without saver"
        failed = [r for r in result.records if r.status != "success"]
        if failed:
            failures.append(
                f"{label}: {len(failed)} runs did not succeed, e.g. task {failed[0].task} "
                f"run {failed[0].run}: {failed[0].status} {failed[0].error}"
            )
        wrong = [r for r in result.records if r.llm_calls != r.fake_calls]
        if wrong:
            notes.append(
                f"{label}: usage.llm_calls differs from the requests the model received in "
                f"{len(wrong)} runs (e.g. task {wrong[0].task} run {wrong[0].run}: "
                f"{wrong[0].llm_calls} vs {wrong[0].fake_calls})"
            )
        tokens = sum(r.input_tokens for r in result.records)
        if tokens != result.fake_prompt_tokens:
            notes.append(
                f"{label}: input tokens in usage ({tokens}) differ from the model's count "
                f"({result.fake_prompt_tokens})"
            )
    if on.notifications() != off.notifications():
        failures.append(
            "notifications differ between the passes (task, run, change summary, message):\n"
            + "\n".join(_first_differences(on.notifications(), off.notifications()))
        )
    if on.deliveries != off.deliveries:
        failures.append(
            "queued deliveries differ between the passes:\n"
            + "\n".join(_first_differences(on.deliveries, off.deliveries))
        )
    if on.verdicts() != off.verdicts():
        failures.append(
            "verdicts differ between the passes (task, run, status, result):\n"
            + "\n".join(_first_differences(on.verdicts(), off.verdicts()))
        )
    if on.skipped != off.skipped or on.final_states != off.final_states:
        failures.append("the passes ran different runs (completed tasks differ)")
    missed = [r for r in on.records if r.evidence_changed and not r.called_model]
    if missed:
        failures.append(
            f"with saver: {len(missed)} runs whose page text changed reused the old verdict, "
            f"e.g. task {missed[0].task} run {missed[0].run}"
        )
    if any(r.reused for r in off.records):
        failures.append("without saver: a run reused a verdict")
    if not on.notifications():
        failures.append("the replay produced no notifications at all: nothing was compared")
    return failures, notes


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _mean(total: float, count: int) -> float:
    return total / count if count else 0.0


def environment() -> list[tuple[str, str]]:
    return common_environment(PACKAGES)


def render_section(
    replay: Replay,
    on: PassResult,
    off: PassResult,
    notes: list[str],
    env: list[tuple[str, str]],
    concurrency: int,
) -> str:
    share_on = _mean(on.runs_calling, on.executed)
    share_off = _mean(off.runs_calling, off.executed)
    ratio = _mean(on.model_calls, off.model_calls)
    verdict = "met" if share_on <= GOAL_SHARE else "NOT met"
    in_on = sum(r.input_tokens for r in on.records)
    in_off = sum(r.input_tokens for r in off.records)
    out_on = sum(r.output_tokens for r in on.records)
    out_off = sum(r.output_tokens for r in off.records)
    ideal = sum(r.evidence_changed for r in on.records)
    leaks = [r for r in on.records if r.called_model and not r.evidence_changed]
    pages = list(replay.pages.values())
    changes = sum(len(p.versions) - 1 for p in pages)
    noise = Counter(p.noise for p in pages)
    behaviors = Counter(t.notify_behavior for t in replay.tasks)
    via = Counter(t.via for t in replay.tasks)
    notified = on.notifications()
    by_behavior = Counter(replay.tasks[t].notify_behavior for t, _, _, _ in notified)
    summaries = Counter(
        {"The condition is met.": "met", "The condition is now met.": "now met"}.get(
            s or "", "state change"
        )
        for _, _, s, _ in notified
    )
    not_modified = sum(r.pages_not_modified for r in on.records)
    fetched = sum(r.pages_fetched for r in on.records)
    identical = on.notifications() == off.notifications() and on.deliveries == off.deliveries

    out = [SECTION_START, "## Change-aware cost saver (`bench/engine.py`)", ""]
    out += [
        f"Goal: with `reuse_unchanged_verdicts` on, at most {GOAL_SHARE:.0%} of runs call the "
        "model, with notifications identical to a run without it. "
        f"**Result: {share_on:.1%} of runs called the model (vs {share_off:.1%} without) — "
        f"goal {verdict}; notifications " + ("identical" if identical else "NOT identical") + ".**",
        "",
        "| | with saver | without saver | with / without |",
        "|---|---:|---:|---:|",
        f"| runs executed | {on.executed} | {off.executed} | |",
        f"| runs that called the model | {on.runs_calling} ({share_on:.1%}) | "
        f"{off.runs_calling} ({share_off:.1%}) | {_mean(on.runs_calling, off.runs_calling):.2f} |",
        f"| model calls | {on.model_calls} | {off.model_calls} | {ratio:.2f} |",
        f"| model calls per round (mean of {replay.runs}) | "
        f"{_mean(on.model_calls, replay.runs):.2f} | {_mean(off.model_calls, replay.runs):.2f} | |",
        f"| model calls per run (mean) | {_mean(on.model_calls, on.executed):.3f} | "
        f"{_mean(off.model_calls, off.executed):.3f} | |",
        f"| input tokens per run (mean) | {_mean(in_on, on.executed):,.0f} | "
        f"{_mean(in_off, off.executed):,.0f} | {_mean(in_on, in_off):.2f} |",
        f"| output tokens per run (mean) | {_mean(out_on, on.executed):,.1f} | "
        f"{_mean(out_off, off.executed):,.1f} | {_mean(out_on, out_off):.2f} |",
        f"| runs with a reused verdict | {sum(r.reused for r in on.records)} | "
        f"{sum(r.reused for r in off.records)} | |",
        f"| notifications (runs that notified) | {len(on.notifications())} | "
        f"{len(off.notifications())} | |",
        f"| deliveries queued | {len(on.deliveries)} | {len(off.deliveries)} | |",
        f"| wall time of the pass | {on.seconds:.1f} s | {off.seconds:.1f} s | |",
        "",
        f"- Lower bound for any change detector: {ideal} of the {on.executed} runs "
        f"({_share(ideal, on.executed)}) read a page version they had not read before (each "
        "task's first run, and runs after one of its pages changed). With the saver the model "
        f"was called on {on.runs_calling} runs; "
        + (
            f"{len(leaks)} of them read only the same versions again (text extraction let "
            "changing page noise through)."
            if leaks
            else "none of them read only versions seen before: the changing nav/footer/script "
            "noise never reached the fingerprint."
        ),
        "- Notifications compared between the passes: the same tasks, the same runs, the same "
        "change summaries and messages, and the same queued deliveries (every event field but "
        "ids and times); every run's verdict (`result`) compared too. "
        + ("All identical." if identical else "**They differ.**"),
        "- Notifications by behaviour: "
        + ", ".join(f"{b} {by_behavior.get(b, 0)}" for b in ("once", "always", "track_state"))
        + f'. Change summaries: {summaries["met"]} "The condition is met." (once, always), '
        f'{summaries["now met"]} "The condition is now met." (track_state), '
        f'{summaries["state change"]} naming the state change (e.g. `date: "2027-01-20" → '
        '"2027-10-02"`). Each notification queued 2 deliveries (a webhook and an email).',
        f"- Pages: {fetched} reads with the saver, {not_modified} of them answered 304 Not "
        "Modified (static pages, conditional requests with the stored ETag/Last-Modified).",
        f"- `once` tasks stop being run after they notify (state completed, as the scheduler "
        f"does): {len(on.skipped)} of the {len(replay.tasks) * replay.runs} task-runs were "
        "skipped for that, the same in both passes.",
    ]
    out += [f"- Note: {n}" for n in notes]
    out += [
        "",
        "What was replayed (`bench/engine_replay.json`, recorded with `--record` from seed "
        f"{replay.seed}): {len(replay.tasks)} tasks x {replay.runs} runs, run round by round "
        f"(run r of every task, up to {concurrency} at a time, then run r+1) through "
        "`run_execution` in process, on a fresh "
        "SQLite database per pass. "
        f"{via['urls']} tasks read their own `urls` (search provider `none`), {via['search']} "
        "find theirs through a local SearXNG (task config `search_provider: searxng`); "
        f"notify behaviours: once {behaviors['once']}, always {behaviors['always']}, "
        f"track_state {behaviors['track_state']}. {len(pages)} pages "
        f"({sum(1 for t in replay.tasks if len(t.pages) > 1)} tasks watch two) with "
        f"{changes} changes of readable text in all (2-4 versions per page, at seeded-random "
        f"runs); noise on every fetch: {noise['static']} static (ETag, 304s), "
        f"{noise['server']} with a fresh session id and timestamp in nav and footer (no ETag), "
        f"{noise['nav']} with changing nav/aside/footer/script text in the page. The model is a "
        "local OpenAI-compatible fake (`tests/fakes`) whose verdict depends only on the text "
        'inside the prompt\'s sources: "not announced" → not met, "announced: DATE" → met '
        'with `current_state {"date": DATE}`; status changes include announcements, '
        "reschedules, postponements and edits that keep the status.",
        "",
        "Per round (model calls; runs executed):",
        "",
        "| Round | runs | runs reading a new version | calls with saver | calls without | "
        "notifications |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in range(1, replay.runs + 1):
        mine = [r for r in on.records if r.run == run]
        theirs = [r for r in off.records if r.run == run]
        out.append(
            f"| {run} | {len(mine)} | {sum(r.evidence_changed for r in mine)} | "
            f"{sum(r.fake_calls for r in mine)} | {sum(r.fake_calls for r in theirs)} | "
            f"{sum(r.notified for r in mine)} |"
        )
    out += ["", "Environment:", ""]
    out += [f"- {name}: {value}" for name, value in env]
    out += ["", SECTION_END]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


async def bench(replay: Replay, concurrency: int) -> tuple[PassResult, PassResult]:
    fakes = Fakes(FakeWeb(), FakeSearxng(), FakeOpenAI(judge, models=(MODEL,)))
    for fake in (fakes.web, fakes.search, fakes.model):
        fake.start()
    try:
        log("pass 1: reuse_unchanged_verdicts=True")
        on = await run_pass(replay, fakes, reuse=True, concurrency=concurrency)
        log(f"  {on.executed} runs in {on.seconds:.1f} s, {on.model_calls} model calls")
        log("pass 2: reuse_unchanged_verdicts=False")
        off = await run_pass(replay, fakes, reuse=False, concurrency=concurrency)
        log(f"  {off.executed} runs in {off.seconds:.1f} s, {off.model_calls} model calls")
    finally:
        for fake in (fakes.web, fakes.search, fakes.model):
            fake.stop()
        log("fake servers stopped")
    return on, off


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--record",
        action="store_true",
        help=f"Regenerate {REPLAY_FILE.name} from the fixed seed, then exit.",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="Seed for --record.")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=CONCURRENCY,
        help=f"Runs of a round executed at once (default {CONCURRENCY}).",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="Print the results; leave RESULTS.md alone."
    )
    args = parser.parse_args(argv)
    if args.record:
        REPLAY_FILE.write_text(json.dumps(record(args.seed), indent=1, ensure_ascii=False) + "\n")
        log(f"wrote {REPLAY_FILE.relative_to(REPO_DIR)}")
        return 0

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    replay = load_replay(json.loads(REPLAY_FILE.read_text()))
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    on, off = asyncio.run(bench(replay, args.concurrency))
    failures, notes = check(replay, on, off)
    for result in (on, off):
        name = "saver-on" if result.reuse else "saver-off"
        rows = [
            {k: v for k, v in vars(r).items() if k not in ("result", "notification")}
            for r in result.records
        ]
        (WORK_DIR / name / "runs.json").write_text(json.dumps(rows, indent=1) + "\n")
    if failures:
        print("\nbench/engine.py: CHECK FAILED", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        print(f"(per-run records in {WORK_DIR}; RESULTS.md left alone)", file=sys.stderr)
        return 1
    section = render_section(replay, on, off, notes, environment(), args.concurrency)
    print()
    print(section)
    if not args.no_write:
        write_section("engine", section)
        log(f"wrote {RESULTS_FILE.relative_to(REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
