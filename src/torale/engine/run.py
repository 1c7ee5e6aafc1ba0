"""One run of a task (docs/api.md §6): search, fetch, evaluate, decide, record.

`run_execution` is the one way a task runs, whoever asks (a scheduler backend, run-now); preview
runs the same pipeline (`perform_run`) for an unsaved task and records nothing. A run holds no
database transaction while it waits on the network: it claims its execution in one short
transaction and records everything it decided — the execution, the task's new state and the
notifications to send — in another.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from torale.browser.fetcher import NO_BROWSER, BrowserFetcher
from torale.config import Settings
from torale.db import locks
from torale.db.database import session_scope
from torale.db.models import Execution, Page, Task
from torale.db.statements import upsert
from torale.engine.decide import decide
from torale.engine.evaluate import (
    EarlierCheck,
    EvaluationError,
    Evaluator,
    Evidence,
    Verdict,
    build_prompt,
)
from torale.engine.fetch import (
    CachedPage,
    FetchedPage,
    Fetcher,
    FetchFailedError,
    SelectorMissedError,
    text_hash,
    url_hash,
)
from torale.engine.search.base import SearchError, SearchResult
from torale.engine.search.http import search_client
from torale.engine.search.registry import search_provider
from torale.executions import lifecycle
from torale.net import OutboundPolicy
from torale.notify.outbox import (
    SELECTOR_MISSED,
    notification_message,
    queue_notifications,
    selector_missed_message,
)
from torale.statuses import ExecutionStatus, TaskState, Trigger
from torale.tasks import transitions
from torale.watch import snapshots as snapshot_store
from torale.watch.judge import (
    Judgement,
    changes_since,
    judge_change,
    judge_rules,
    summarize_changes,
)
from torale.watch.patterns import PatternTimeoutError
from torale.watch.snapshots import Snapshot
from torale.watch.targets import Target, targets_of

logger = logging.getLogger("torale.engine")
_FETCH_CONCURRENCY = 5


class RunFailedError(Exception):
    """The run cannot produce a verdict; the message is shown to the user."""


class SelectorMissedRunError(RunFailedError):
    """A selector matched nothing: the run fails, and enough of these in a row tell the owner."""

    def __init__(self, message: str, missed: list[Target]) -> None:
        super().__init__(message)
        self.missed = missed


class AlreadyRunningError(Exception):
    """The task has a pending or running execution already; runs of a task never overlap."""


@dataclass
class Engine:
    """What runs need, built once per process."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    write_lock: asyncio.Lock | None
    evaluator: Evaluator
    fetcher: Fetcher
    http: httpx.AsyncClient  # for search APIs: the outbound policy, their hosts trusted
    # Called after a run has committed notifications to send (the dispatcher's wake-up).
    on_queued: Callable[[], None] | None = None
    # Reads targets with `render: browser`; None when no browser is configured.
    browser: BrowserFetcher | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        write_lock: asyncio.Lock | None,
    ) -> Engine:
        policy = OutboundPolicy.from_settings(settings, purpose="pages")
        fetcher = Fetcher(
            policy,
            timeout=settings.fetch_timeout_seconds,
            max_bytes=settings.fetch_max_bytes,
            max_chars=settings.max_source_chars,
        )
        http = search_client(settings)
        return cls(
            settings,
            sessions,
            write_lock,
            Evaluator(settings),
            fetcher,
            http,
            browser=BrowserFetcher.from_settings(settings),
        )

    @property
    def lease(self) -> timedelta:
        """How long a claimed or running execution may stay unfinished before it counts as
        orphaned: the run time limit, plus room to record the outcome."""
        limit = self.settings.run_timeout_seconds
        return timedelta(seconds=limit + max(10.0, limit / 2))

    async def close(self) -> None:
        await self.fetcher.close()
        await self.http.aclose()
        if self.browser is not None:
            await self.browser.close()


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a run needs to know of a task (saved or, for preview, not)."""

    name: str
    search_query: str
    condition: str | None
    targets: list[Target]
    config: dict[str, Any]
    mode: str = "model"  # model | change | rules
    rules: dict[str, Any] | None = None
    change: dict[str, Any] | None = None
    render: str = "plain"  # how targets without their own `render` are read
    screenshot: bool = False  # keep a screenshot of pages read with the browser


@dataclass(frozen=True, slots=True)
class PreviousVerdict:
    fingerprint: str
    result: dict[str, Any]
    sources: list[dict[str, Any]]


@dataclass
class RunOutcome:
    verdict: Verdict
    sources: list[dict[str, str]]
    fingerprint: str
    pages: list[FetchedPage]
    usage: dict[str, Any] = field(default_factory=dict)
    snapshots: list[Snapshot] = field(default_factory=list)  # what each source read
    diff: str | None = None  # the watched text's diff from the previous run (trimmed)
    # Rules: each condition on each target and whether it held (`watch.judge.Judgement`).
    checks: list[dict[str, Any]] = field(default_factory=list)
    # Model runs: what the change summary says when the decision has nothing more precise (the
    # model's change_summary, written with the diff in view, else the diff in words).
    change_hint: str | None = None


def _normal_url(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/")


def fingerprint(*, spec: TaskSpec, model: str, evidence: list[Evidence]) -> str:
    """What a verdict depends on: the question, the model, and the text of every source."""
    material = {
        "query": spec.search_query,
        "condition": spec.condition,
        "model": model,
        "sources": sorted((_normal_url(e.url), e.text_hash) for e in evidence),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _grounding(cited: list[str], evidence: list[Evidence]) -> list[dict[str, str]]:
    """The sources the model cited that it was actually given; all of them if it cited none."""
    by_url = {_normal_url(e.url): e for e in evidence}
    chosen = [by_url[u] for u in dict.fromkeys(_normal_url(c) for c in cited) if u in by_url]
    return [{"url": e.url, "title": e.title} for e in (chosen or evidence)]


async def _read_sources(
    engine: Engine,
    spec: TaskSpec,
    targets: list[Target],
    found: dict[str, SearchResult],
    cache: dict[str, CachedPage],
    usage: dict[str, Any],
    *,
    strict: bool,
) -> tuple[list[Evidence], list[FetchedPage], list[Snapshot], list[str]]:
    """Read every target, plainly or with the browser (the target's `render`, else the
    task's). A selector that matches nothing fails the run; with `strict` (change and rules
    tasks, which compare each target) so does any target not read. The last item: why each
    target that could not be read was not ("label: reason")."""
    slots = asyncio.Semaphore(_FETCH_CONCURRENCY)

    async def fetch(target: Target) -> FetchedPage:
        if (target.render or spec.render) != "browser":
            return await engine.fetcher.fetch(
                target.url, cache.get(target.key), selector=target.selector
            )
        if engine.browser is None:
            raise FetchFailedError(NO_BROWSER)
        return await engine.browser.fetch(
            target.url, selector=target.selector, screenshot=spec.screenshot
        )

    async def read(target: Target) -> FetchedPage | FetchFailedError:
        async with slots:
            try:
                return await fetch(target)
            except FetchFailedError as exc:
                logger.info("could not read %s: %s", target.url, exc)
                return exc

    pages = await asyncio.gather(*(read(target) for target in targets))
    missed = [
        (t, page)
        for t, page in zip(targets, pages, strict=True)
        if isinstance(page, SelectorMissedError)
    ]
    if missed:
        raise SelectorMissedRunError(
            "The selector matched nothing: " + "; ".join(f"{t.label}: {why}" for t, why in missed),
            [t for t, _ in missed],
        )
    unread = [
        f"{t.label}: {page}"
        for t, page in zip(targets, pages, strict=True)
        if isinstance(page, FetchFailedError)
    ]
    if strict and unread:
        raise RunFailedError("Could not read " + "; ".join(unread))
    evidence, fetched, snapshots = [], [], []
    for target, page in zip(targets, pages, strict=True):
        hit = found.get(target.url)
        if isinstance(page, FetchedPage) and (page.text.strip() or target.selector or strict):
            usage["pages_fetched"] += 1
            usage["pages_not_modified"] += page.not_modified
            fetched.append(page)
            title = page.title or (hit.title if hit else "")
            evidence.append(
                Evidence(url=target.url, title=title, text=page.text, text_hash=page.text_hash)
            )
            snapshots.append(Snapshot(target, title, page.text, page.screenshot))
            continue
        usage["pages_failed"] += 1
        if hit and hit.snippet.strip():
            # The search engine's snippet is still evidence when the page itself can't be read.
            text = hit.snippet.strip()
            evidence.append(
                Evidence(url=target.url, title=hit.title, text=text, text_hash=text_hash(text))
            )
            snapshots.append(Snapshot(target, hit.title, text))
    return evidence, fetched, snapshots, unread


@dataclass(frozen=True, slots=True)
class PageCacheRead:
    """The page cache's entries of some targets, read ahead (the claim reads those of the
    task's own targets in its transaction): `keys` were looked up, `pages` found."""

    keys: frozenset[str]
    pages: dict[str, CachedPage]


_CACHED_PAGES = select(Page).where(Page.url_hash.in_(bindparam("hashes", expanding=True)))


async def read_page_cache(session: AsyncSession, targets: Iterable[Target]) -> PageCacheRead:
    """The page cache's entries of `targets`, by target key (a URL and its selector)."""
    keys = {url_hash(t.key): t.key for t in targets}
    pages: dict[str, CachedPage] = {}
    if keys:
        rows = await session.scalars(_CACHED_PAGES, {"hashes": list(keys)})
        pages = {
            keys[row.url_hash]: CachedPage(
                row.title or "", row.text, row.text_hash, row.etag, row.last_modified, row.body_hash
            )
            for row in rows
        }
    return PageCacheRead(frozenset(keys.values()), pages)


async def _cached_pages(
    engine: Engine, targets: list[Target], read: PageCacheRead | None
) -> dict[str, CachedPage]:
    """The page cache's entries of `targets`: those `read` ahead, the others read now."""
    known = read or PageCacheRead(frozenset(), {})
    rest = [t for t in targets if t.key not in known.keys]
    if not rest:
        return known.pages
    async with session_scope(engine.sessions, writes=False) as session:
        more = await read_page_cache(session, rest)
    return {**known.pages, **more.pages}


def _new_usage() -> dict[str, Any]:
    return {
        "llm_calls": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "search_calls": 0,
        "pages_fetched": 0,
        "pages_not_modified": 0,
        "pages_failed": 0,
        "verdict_reused": False,
    }


# The previous successful run's texts by target key, or a function that loads those of the
# targets of the snapshots it is given (what a comparison with them needs).
PreviousTexts = dict[str, str] | Callable[[list[Snapshot]], Awaitable[dict[str, str]]] | None


async def _texts(previous: PreviousTexts, snapshots: list[Snapshot]) -> dict[str, str]:
    if previous is None:
        return {}
    if isinstance(previous, dict):
        return previous
    return await previous(snapshots)


async def perform_run(
    engine: Engine,
    spec: TaskSpec,
    *,
    earlier: EarlierCheck | None,
    previous: PreviousVerdict | None,
    use_page_cache: bool,
    previous_texts: PreviousTexts = None,
    page_cache: PageCacheRead | None = None,
) -> RunOutcome:
    """Search, read, and judge (or reuse the previous verdict); `change` and `rules` tasks read
    only their targets and decide without a model. Writes nothing. `previous_texts` are the
    previous successful run's texts by target key (or how to load them): what `change`
    compares with, and what a model sees the diff from — loaded only when the evidence
    changed, so that the model is asked at all."""
    if spec.mode != "model":
        return await _perform_watch(
            engine,
            spec,
            earlier=earlier,
            previous_texts=previous_texts,
            use_page_cache=use_page_cache,
            page_cache=page_cache,
        )
    settings = engine.settings
    usage = _new_usage()
    model = engine.evaluator.model_name(spec.config.get("model"))  # fails fast without one
    provider = search_provider(spec.config.get("search_provider"), settings, engine.http)

    results: list[SearchResult] = []
    if provider.name != "none":
        usage["search_calls"] = 1
        results = await provider.search(spec.search_query, max_results=settings.max_search_results)
    found: dict[str, SearchResult] = {}
    for result in results:
        found.setdefault(result.url, result)
    # The task's own targets first; a search result already among them is read once. Search
    # results are read plainly, whatever the task's `render`.
    own = {t.url for t in spec.targets}
    plain = [Target(u, render="plain") for u in found if u not in own]
    targets = [*dict.fromkeys(spec.targets), *plain]

    cache = await _cached_pages(engine, targets, page_cache) if use_page_cache else {}
    evidence, pages, snapshots, unread = await _read_sources(
        engine, spec, targets, found, cache, usage, strict=False
    )
    if not evidence:
        raise RunFailedError(
            "Nothing to read: "
            + ("the search found no results" if not results else "no result could be read")
            + (" and none of the task's urls could be read" if spec.targets else "")
            + (" (" + "; ".join(unread) + ")" if unread else "")
        )

    print_ = fingerprint(spec=spec, model=model, evidence=evidence)
    if settings.reuse_unchanged_verdicts and previous and previous.fingerprint == print_:
        usage["verdict_reused"] = True
        verdict = Verdict.model_validate({**previous.result, "sources": []})
        return RunOutcome(verdict, previous.sources, print_, pages, usage, snapshots)

    # Only now, with a model call to make anyway: what changed since the last run, as context
    # for the model's change summary (a reused verdict above costs no diff either).
    texts = await _texts(previous_texts, snapshots)
    diff = changes_since(snapshots, texts) if texts else None
    prompt = build_prompt(
        query=spec.search_query,
        condition=spec.condition,
        evidence=evidence,
        earlier=earlier,
        now=datetime.now(UTC),
        changes=diff,
    )
    evaluation = await engine.evaluator.evaluate(model=model, prompt=prompt)
    usage["llm_calls"] = evaluation.requests
    usage["input_tokens"] = evaluation.input_tokens
    usage["output_tokens"] = evaluation.output_tokens
    verdict = evaluation.verdict
    sources = _grounding(verdict.sources, evidence)
    hint = None
    if diff:
        hint = verdict.change_summary or summarize_changes(snapshots, texts)
    return RunOutcome(verdict, sources, print_, pages, usage, snapshots, diff, change_hint=hint)


async def _perform_watch(
    engine: Engine,
    spec: TaskSpec,
    *,
    earlier: EarlierCheck | None,
    previous_texts: PreviousTexts,
    use_page_cache: bool,
    page_cache: PageCacheRead | None,
) -> RunOutcome:
    """A `change` or `rules` run: read the targets, compare, decide — no search, no model."""
    usage = _new_usage()
    targets = list(dict.fromkeys(spec.targets))
    if not targets:
        raise RunFailedError("Nothing to watch: the task has no urls")
    cache = await _cached_pages(engine, targets, page_cache) if use_page_cache else {}
    evidence, pages, snapshots, _ = await _read_sources(
        engine, spec, targets, {}, cache, usage, strict=True
    )
    previous = await _texts(previous_texts, snapshots)
    try:
        judgement: Judgement = (
            judge_rules(
                snapshots,
                spec.rules or {},
                earlier.current_state if earlier else None,
                previous,
            )
            if spec.mode == "rules"
            else judge_change(snapshots, previous, spec.change)
        )
    except PatternTimeoutError as exc:
        raise RunFailedError(str(exc)) from None
    verdict = Verdict.model_construct(
        answer=judgement.answer,
        condition_met=judgement.condition_met,
        current_state=judgement.current_state,
        reasoning=judgement.reasoning,
        confidence=1.0,
        sources=[],
        inferred_condition=None,
        change_summary=None,
    )
    material = {"mode": spec.mode, "sources": sorted((e.url, e.text_hash) for e in evidence)}
    print_ = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    sources = [{"url": e.url, "title": e.title} for e in evidence]
    return RunOutcome(
        verdict, sources, print_, pages, usage, snapshots, judgement.diff, judgement.checks
    )


# --- run_execution -----------------------------------------------------------------------


_tasks = cast("Table", Task.__table__)
_executions = cast("Table", Execution.__table__)


@dataclass(frozen=True, slots=True)
class Claimed:
    """The execution claimed, what it runs, what the last successful run found and the hashes
    of the texts it read, and the page cache's entries of the task's targets."""

    execution_id: uuid.UUID
    spec: TaskSpec
    earlier: EarlierCheck | None
    previous: PreviousVerdict | None
    page_cache: PageCacheRead
    previous_hashes: dict[str, str]  # the last successful run's text hashes, by target key


_LAST_SUCCESS = (
    select(_executions.c.id)
    .where(
        _executions.c.task_id == _tasks.c.id,
        _executions.c.status == ExecutionStatus.SUCCESS,
    )
    .order_by(_executions.c.created_at.desc())
    .limit(1)
    .correlate(_tasks)
    .scalar_subquery()
)
# Built once (with its cache key): building this statement cost more than running it.
_CLAIM_TASK = (
    select(
        _tasks.c.user_id,
        _tasks.c.state,
        _tasks.c.name,
        _tasks.c.search_query,
        _tasks.c.condition_description,
        _tasks.c.urls,
        _tasks.c.config,
        _tasks.c.mode,
        _tasks.c.rules,
        _tasks.c.change_options,
        _tasks.c.render,
        _tasks.c.screenshot,
        _executions.c.id.label("last_success_id"),
        _tasks.c.last_known_state,
        _tasks.c.condition_met,
        _executions.c.result,
        _executions.c.completed_at,
        _executions.c.created_at,
        _executions.c.evidence_fingerprint,
        _executions.c.grounding_sources,
    )
    .select_from(_tasks.outerjoin(_executions, _executions.c.id == _LAST_SUCCESS))
    .where(_tasks.c.id == bindparam("task_id"))
)


async def _claim(
    engine: Engine, task_id: uuid.UUID, trigger: Trigger, execution_id: uuid.UUID | None
) -> Claimed | None:
    # Every run passes through here, so it reads only the columns it needs, without loading
    # ORM objects (a scheduler's throughput is mostly this transaction and the record). The
    # page cache's entries of the targets and the hashes of the last successful run's texts
    # are read here too: no unit of work of their own.
    now = datetime.now(UTC)
    async with session_scope(engine.sessions, engine.write_lock) as session:
        # The owner's row first (db.locks), and whether the account is still active: a
        # deactivated account's task does not run, whatever its state says.
        owner = await locks.lock_task_owner(session, task_id)
        if owner is None:
            return None  # deleted (with its executions)
        if not owner[1]:
            await skip_deactivated(session, owner=owner[0], execution_id=execution_id, now=now)
            return None
        # The task and its last successful execution (what the run compares against), in one
        # query: the execution claimed below is not a successful one, so the order is the same.
        task = (await session.execute(_CLAIM_TASK, {"task_id": task_id})).one_or_none()
        if task is None:
            return None
        if execution_id is None and trigger == Trigger.SCHEDULE and task.state != TaskState.ACTIVE:
            return None  # paused or completed since the slot was planned: no scheduled run
        if execution_id is None:
            execution, created = await lifecycle.start_execution(
                session,
                task_id=task_id,
                user_id=task.user_id,
                trigger=trigger,
                status=ExecutionStatus.RUNNING,
                lease=engine.lease,
            )
            if not created:
                raise AlreadyRunningError(f"task {task_id} is already running")
            execution_id = execution.id
        elif not await lifecycle.claim_pending(
            session, execution_id=execution_id, now=now, lease=engine.lease
        ):
            return None  # already run, or failed as orphaned
        earlier = previous = None
        if task.result:  # the last successful run's (None without one)
            earlier = EarlierCheck(
                answer=str(task.result.get("answer", "")),
                current_state=task.last_known_state,
                condition_met=task.condition_met,
                checked_at=task.completed_at or task.created_at,
            )
            if task.evidence_fingerprint:
                previous = PreviousVerdict(
                    task.evidence_fingerprint, task.result, task.grounding_sources
                )
        spec = TaskSpec(
            name=task.name,
            search_query=task.search_query,
            condition=task.condition_description,
            targets=targets_of(task.urls),
            config=dict(task.config),
            mode=task.mode,
            rules=task.rules,
            change=task.change_options,
            render=task.render,
            screenshot=task.screenshot,
        )
        page_cache = await read_page_cache(session, spec.targets)
        hashes = {}
        if task.last_success_id is not None:
            hashes = await snapshot_store.hashes_of(session, task.last_success_id)
    return Claimed(execution_id, spec, earlier, previous, page_cache, hashes)


DEACTIVATED_REASON = "the account is deactivated"


async def skip_deactivated(
    session: AsyncSession, *, owner: uuid.UUID, execution_id: uuid.UUID | None, now: datetime
) -> list[Task]:
    """A run of a deactivated account's task does not happen: its queued execution fails (with
    why) and the account's active tasks are paused as deactivation pauses them (a write that
    raced the deactivation left them active). The tasks it paused. The owner's row is locked."""
    if execution_id is not None:
        await lifecycle.fail_unstarted(
            session, execution_id=execution_id, reason=DEACTIVATED_REASON
        )
    return await transitions.pause_for_deactivation(session, user_ids=[owner], now=now)


async def _record_success(
    engine: Engine, task_id: uuid.UUID, execution_id: uuid.UUID, outcome: RunOutcome
) -> None:
    if await _record_outcome(engine, task_id, execution_id, outcome) and engine.on_queued:
        engine.on_queued()


_RUN_AND_TASK = (
    select(Execution, Task)
    .join(Task, Task.id == Execution.task_id)
    .where(Execution.id == bindparam("execution_id"), Task.id == bindparam("task_id"))
)


async def _record_outcome(
    engine: Engine, task_id: uuid.UUID, execution_id: uuid.UUID, outcome: RunOutcome
) -> bool:
    """Write the run's outcome in one transaction; True if it queued notifications."""
    now = datetime.now(UTC)
    verdict = outcome.verdict
    async with session_scope(engine.sessions, engine.write_lock) as session:
        owner = await locks.lock_task_owner(session, task_id)  # first: see db.locks
        if owner is None:
            return False  # the task was deleted
        # The execution and its task in one statement (no row: one of them is gone).
        values = {"execution_id": execution_id, "task_id": task_id}
        row = (await session.execute(_RUN_AND_TASK, values)).one_or_none()
        if row is None or row[0].status != ExecutionStatus.RUNNING:
            return False  # the task was deleted, or the run was declared orphaned meanwhile
        execution, task = row
        # Decide against the task as it is now, not as it was when the run began.
        decision = decide(
            notify_behavior=task.notify_behavior,
            verdict=verdict,
            was_met=task.condition_met,
            previous_state=task.last_known_state,
            hint=outcome.change_hint,
        )
        # A run under way when its owner was deactivated records its result, and notifies
        # nobody.
        notify = (
            decision.notify
            and owner[1]
            and not (task.notify_behavior == "once" and task.state == TaskState.COMPLETED)
        )
        lifecycle.succeed(execution, now=now)
        execution.condition_met = verdict.condition_met
        execution.change_summary = decision.change_summary
        execution.result = {
            "answer": verdict.answer,
            "condition_met": verdict.condition_met,
            "current_state": verdict.current_state,
            "reasoning": verdict.reasoning,
            "confidence": verdict.confidence,
        }
        execution.grounding_sources = outcome.sources
        execution.usage = outcome.usage
        execution.evidence_fingerprint = outcome.fingerprint
        task.condition_met = verdict.condition_met
        task.last_known_state = verdict.current_state
        task.selector_misses = 0  # every selector matched (a miss fails the run)
        if notify:
            execution.notification = notification_message(
                task_name=task.name,
                answer=verdict.answer,
                change_summary=decision.change_summary,
                sources=outcome.sources,
                diff=outcome.diff,
            )
            task.last_notified_at = now
            await queue_notifications(
                session, task=task, execution=execution, now=now, diff=outcome.diff
            )
            if decision.complete_task:
                transitions.complete(task, now=now)
        await snapshot_store.store(
            session, execution_id=execution.id, snapshots=outcome.snapshots, now=now
        )
        for page in outcome.pages:
            if page.rendered:
                continue  # the page cache serves the plain fetcher's conditional requests
            if page.cache_current:
                continue  # the entry holds this page already: no write
            if not page.not_modified or page.etag or page.last_modified:
                await upsert(
                    session,
                    Page,
                    {
                        "url_hash": url_hash(page.cache_key),
                        "url": page.url,
                        "etag": page.etag,
                        "last_modified": page.last_modified,
                        "title": page.title,
                        "text": page.text,
                        "text_hash": page.text_hash,
                        "body_hash": page.body_hash,
                        "fetched_at": now,
                    },
                    key="url_hash",
                )
    return notify


async def _record_failure(
    engine: Engine,
    execution_id: uuid.UUID,
    message: str,
    *,
    missed: SelectorMissedRunError | None = None,
) -> None:
    now = datetime.now(UTC)
    queued = False
    async with session_scope(engine.sessions, engine.write_lock) as session:
        owners = await locks.lock_execution_owners(session, [execution_id])  # first: db.locks
        if missed is not None:
            queued = await _count_selector_miss(
                session, engine, execution_id, missed, active=all(owners.values()), now=now
            )
        else:
            await lifecycle.fail(session, execution_id=execution_id, message=message, now=now)
    if queued and engine.on_queued:
        engine.on_queued()


async def _count_selector_miss(
    session: AsyncSession,
    engine: Engine,
    execution_id: uuid.UUID,
    missed: SelectorMissedRunError,
    *,
    active: bool,
    now: datetime,
) -> bool:
    """Fail a run whose selector matched nothing, counting it on the task; at the Nth such run
    in a row (TORALE_SELECTOR_MISSES_TO_NOTIFY), queue one notification saying which URL and
    selector stopped matching. True if it queued one. The owners are locked."""
    execution = await session.get(Execution, execution_id)
    if execution is None or execution.status != ExecutionStatus.RUNNING:
        return False  # declared orphaned meanwhile: it was not this run's miss to count
    # Tasks before executions (db.locks): the count first, then the run's status.
    misses = await session.scalar(
        update(_tasks)
        .where(_tasks.c.id == execution.task_id)
        .values(selector_misses=_tasks.c.selector_misses + 1)
        .returning(_tasks.c.selector_misses)
    )
    await lifecycle.fail(session, execution_id=execution_id, message=str(missed), now=now)
    limit = engine.settings.selector_misses_to_notify
    if not (active and limit and misses == limit):
        return False
    task = await session.get(Task, execution.task_id)
    if task is None:
        return False
    await session.refresh(execution)
    labels = [t.label for t in missed.missed]
    execution.notification = selector_missed_message(task_name=task.name, missed=labels, runs=limit)
    deliveries = await queue_notifications(
        session,
        task=task,
        execution=execution,
        now=now,
        event_type=SELECTOR_MISSED,
        extra={
            "missed": [{"url": t.url, "selector": t.selector} for t in missed.missed],
            "runs": limit,
        },
    )
    return bool(deliveries)


async def run_execution(
    engine: Engine,
    task_id: uuid.UUID,
    trigger: Trigger,
    *,
    execution_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Run the task once and record the outcome; the execution's id (None: nothing to run).

    With `execution_id`, runs that pending execution (queued by run-now); without, starts a
    new one. Raises AlreadyRunningError when the task has another run in progress. Failures
    of the run itself are recorded on the execution (status failed, user-facing message) and
    logged in full; they are not raised.
    """
    claimed = await _claim(engine, task_id, trigger, execution_id)
    if claimed is None:
        return None
    execution_id = claimed.execution_id

    async def previous_texts(snapshots: list[Snapshot]) -> dict[str, str]:
        # The texts of the last successful run's sources that these snapshots compare with:
        # a text whose hash is the snapshot's is the snapshot's text (texts are stored by
        # hash), so only changed ones are read.
        hashes = claimed.previous_hashes
        texts, wanted = {}, {}
        for snapshot in snapshots:
            digest = hashes.get(snapshot.target.key)
            if digest == snapshot.content_hash:
                texts[snapshot.target.key] = snapshot.text
            elif digest is not None:
                wanted[snapshot.target.key] = digest
        if wanted:
            async with session_scope(engine.sessions, writes=False) as session:
                stored = await snapshot_store.texts_by_hash(session, set(wanted.values()))
            texts.update({k: stored[d] for k, d in wanted.items() if d in stored})
        return texts

    try:
        async with asyncio.timeout(engine.settings.run_timeout_seconds):
            outcome = await perform_run(
                engine,
                claimed.spec,
                earlier=claimed.earlier,
                previous=claimed.previous,
                use_page_cache=True,
                previous_texts=previous_texts,
                page_cache=claimed.page_cache,
            )
        await _record_success(engine, task_id, execution_id, outcome)
    except SelectorMissedRunError as exc:
        logger.info("run %s of task %s: %s", execution_id, task_id, exc)
        await _record_failure(engine, execution_id, str(exc), missed=exc)
    except (RunFailedError, SearchError, EvaluationError) as exc:
        logger.warning("run %s of task %s failed: %s", execution_id, task_id, exc, exc_info=exc)
        await _record_failure(engine, execution_id, str(exc))
    except TimeoutError:
        seconds = engine.settings.run_timeout_seconds
        logger.warning("run %s of task %s timed out after %s s", execution_id, task_id, seconds)
        await _record_failure(engine, execution_id, f"The run did not finish within {seconds:g} s")
    except asyncio.CancelledError:
        await asyncio.shield(
            _record_failure(engine, execution_id, "Interrupted: the server stopped during the run")
        )
        raise
    except Exception:
        logger.exception("run %s of task %s failed unexpectedly", execution_id, task_id)
        await _record_failure(
            engine, execution_id, "The run failed because of an internal error (see the server log)"
        )
    return execution_id


async def preview_run(
    engine: Engine,
    spec: TaskSpec,
    *,
    earlier: EarlierCheck | None = None,
    previous_texts: dict[str, str] | None = None,
) -> RunOutcome:
    """The same pipeline for an unsaved task (or an existing task's edited form), within the
    run time limit; records nothing. `earlier` and `previous_texts` are what an existing task's
    last run found and read: what a real run of it would compare with."""
    async with asyncio.timeout(engine.settings.run_timeout_seconds):
        return await perform_run(
            engine,
            spec,
            earlier=earlier,
            previous=None,  # a preview always judges: it is asked to
            use_page_cache=False,
            previous_texts=previous_texts,
        )
