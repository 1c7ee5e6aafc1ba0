"""Whole runs through the API: notify behaviours over several runs, the cost saver, conditional
requests — against the local search engine, web pages and model."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, verdict_rules
from tests.fixtures.engine import MET, NOT_MET, new_task, page, run_now
from tests.fixtures.users import ApiUser
from torale.db.models import Delivery, Page
from torale.engine.fetch import text_hash

ANNOUNCED = "Apple announced the iPhone 18 release for September 9."
RESCHEDULED = "Apple moved the iPhone 18 release to September 16."
NOT_YET = "The iPhone 18 release date is still to be announced."
CHANGED = "The pages changed since the last check: {} (1 line added, 1 removed)"

RULES = verdict_rules(
    [
        (ANNOUNCED, MET),
        (RESCHEDULED, {**MET, "current_state": {"release_date": "September 16"}}),
        (NOT_YET, NOT_MET),
    ],
    default=NOT_MET,
)


@pytest.fixture
def newsroom(fake_web: FakeWeb, fake_search: FakeSearxng, fake_model: FakeOpenAI) -> str:
    """A page the search engine finds, saying 'not yet' for now; the model follows RULES."""
    fake_web.set_page("/newsroom", page(NOT_YET))
    url = fake_web.url + "/newsroom"
    fake_search.set_results(None, [(url, "Apple Newsroom", "iPhone news")])
    fake_model.script = RULES
    return url


async def deliveries(app: FastAPI, execution_id: str) -> list[Delivery]:
    async with app.state.torale.sessions() as session:
        rows = await session.scalars(
            select(Delivery).where(Delivery.execution_id == uuid.UUID(execution_id))
        )
        return list(rows)


async def test_once_notifies_the_first_time_then_completes(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    task = await new_task(
        client,
        alice,
        notify_behavior="once",
        notifications=[
            {"type": "webhook", "url": "https://hooks.example.com/t", "headers": {"X-T": "s"}},
            {"type": "email", "address": "alice@example.com"},
        ],
        context={"ticket": 7},
    )
    first = await run_now(client, alice, task["id"])
    assert first["status"] == "success", first
    assert first["condition_met"] is False
    assert first["notification"] is None
    assert first["result"]["answer"] == NOT_MET["answer"]
    assert first["grounding_sources"] == [{"url": newsroom, "title": "Apple Newsroom"}]
    assert first["usage"]["llm_calls"] == 1
    assert first["usage"]["search_calls"] == 1
    assert first["usage"]["pages_fetched"] == 1
    assert await deliveries(app, first["id"]) == []

    fake_web.set_page("/newsroom", page(ANNOUNCED))
    second = await run_now(client, alice, task["id"])
    assert second["condition_met"] is True
    # The page changed since the first run: the summary says how (the model wrote none).
    assert second["change_summary"] == CHANGED.format(newsroom)
    assert second["notification"].startswith(f"{task['name']}: {MET['answer']}")
    assert newsroom in second["notification"]
    queued = sorted(await deliveries(app, second["id"]), key=lambda d: d.channel_index)
    assert [(d.channel_type, d.status) for d in queued] == [
        ("webhook", "pending"),
        ("email", "pending"),
    ]
    assert queued[0].channel["headers"] == {"X-T": "s"}  # the real secret, for sending
    event: dict[str, Any] = queued[0].payload
    assert event["id"] == str(queued[0].id)
    assert event["event_type"] == "task.condition_met"
    assert event["api_version"] == "v1"
    assert event["data"]["context"] == {"ticket": 7}
    assert event["data"]["task"]["id"] == task["id"]
    assert event["data"]["execution"]["id"] == second["id"]
    assert event["data"]["result"]["answer"] == MET["answer"]
    assert event["data"]["result"]["grounding_sources"] == second["grounding_sources"]

    after = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).json()
    assert after["state"] == "completed"
    assert after["next_run"] is None
    assert after["condition_met"] is True
    assert after["last_known_state"] == {"release_date": "September 9"}
    assert after["last_notified_at"] is not None
    assert after["last_execution"]["id"] == second["id"]

    # Run by hand again: a completed `once` task does not notify a second time.
    third = await run_now(client, alice, task["id"])
    assert third["condition_met"] is True
    assert third["notification"] is None
    assert await deliveries(app, third["id"]) == []


async def test_always_notifies_on_every_met_run(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb, newsroom: str
) -> None:
    task = await new_task(client, alice, notify_behavior="always")
    fake_web.set_page("/newsroom", page(ANNOUNCED))
    runs = [await run_now(client, alice, task["id"]) for _ in range(3)]
    assert [r["notification"] is not None for r in runs] == [True, True, True]
    fake_web.set_page("/newsroom", page(NOT_YET))
    quiet = await run_now(client, alice, task["id"])
    assert quiet["notification"] is None
    notified = (
        await client.get(f"/api/v1/tasks/{task['id']}/notifications", headers=alice.headers)
    ).json()
    assert notified["total"] == 3
    assert [e["id"] for e in notified["items"]] == [r["id"] for r in reversed(runs)]
    everything = (
        await client.get(f"/api/v1/tasks/{task['id']}/executions", headers=alice.headers)
    ).json()
    assert everything["total"] == 4
    assert everything["items"][0]["id"] == quiet["id"]  # newest first


async def test_track_state_notifies_on_becoming_met_and_on_real_changes(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    task = await new_task(client, alice, notify_behavior="track_state")
    quiet = await run_now(client, alice, task["id"])
    assert (quiet["condition_met"], quiet["notification"]) == (False, None)

    fake_web.set_page("/newsroom", page(ANNOUNCED))
    became = await run_now(client, alice, task["id"])
    assert became["notification"] is not None
    assert became["change_summary"] == CHANGED.format(newsroom)

    # Same facts written differently: not a meaningful change.
    fake_model.script = verdict_rules(
        [(ANNOUNCED, {**MET, "current_state": {"Release_Date": "  september 9 "}})], NOT_MET
    )
    fake_web.set_page("/newsroom", page(ANNOUNCED + " Preorders open Friday."))
    same = await run_now(client, alice, task["id"])
    assert same["condition_met"] is True
    assert same["notification"] is None
    assert same["change_summary"] is None

    fake_model.script = RULES
    fake_web.set_page("/newsroom", page(RESCHEDULED))
    changed = await run_now(client, alice, task["id"])
    assert changed["notification"] is not None
    assert "september 9" in changed["change_summary"].lower()  # the state as last reported
    assert '→ "September 16"' in changed["change_summary"]
    assert changed["change_summary"] in changed["notification"]


async def test_unchanged_evidence_reuses_the_verdict_without_a_model_call(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    task = await new_task(client, alice, notify_behavior="always")
    first = await run_now(client, alice, task["id"])
    assert fake_model.calls == 1
    second = await run_now(client, alice, task["id"])
    assert fake_model.calls == 1  # no second call
    assert second["usage"]["verdict_reused"] is True
    assert second["usage"]["llm_calls"] == 0
    assert second["result"] == first["result"]
    assert second["grounding_sources"] == first["grounding_sources"]

    # The page's readable text changes: the model is asked again.
    fake_web.set_page("/newsroom", page(ANNOUNCED))
    third = await run_now(client, alice, task["id"])
    assert fake_model.calls == 2
    assert third["usage"]["verdict_reused"] is False
    assert third["condition_met"] is True
    # A verdict reused for an `always` task still notifies, as the model's answer would.
    fourth = await run_now(client, alice, task["id"])
    assert fake_model.calls == 2
    assert fourth["usage"]["verdict_reused"] is True
    assert fourth["notification"] is not None

    # Editing the condition makes the old verdict useless.
    await client.patch(
        f"/api/v1/tasks/{task['id']}",
        json={"condition_description": "Apple has shipped it"},
        headers=alice.headers,
    )
    await run_now(client, alice, task["id"])
    assert fake_model.calls == 3


async def test_noise_in_menus_and_footers_does_not_defeat_the_cost_saver(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    task = await new_task(client, alice)
    for session_id in ("a1", "b2", "c3"):
        fake_web.set_page("/newsroom", page(NOT_YET, noise=f"session={session_id} ts={session_id}"))
        await run_now(client, alice, task["id"])
    assert fake_model.calls == 1


@pytest.mark.parametrize("extra_settings", [{"reuse_unchanged_verdicts": False}])
async def test_cost_saver_can_be_turned_off(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, newsroom: str
) -> None:
    task = await new_task(client, alice)
    for _ in range(3):
        await run_now(client, alice, task["id"])
    assert fake_model.calls == 3


async def test_pages_are_asked_for_conditionally(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    task = await new_task(client, alice)
    first = await run_now(client, alice, task["id"])
    assert first["usage"]["pages_not_modified"] == 0
    second = await run_now(client, alice, task["id"])
    assert fake_web.count_304("/newsroom") == 1
    assert second["usage"]["pages_not_modified"] == 1
    assert second["usage"]["verdict_reused"] is True
    assert fake_model.calls == 1


async def test_a_page_sent_again_byte_for_byte_is_not_extracted_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    """A server that sends no ETag or Last-Modified answers 200 every time: the same bytes
    as last time give the text read last time, without extracting it again."""
    fake_web.set_page("/newsroom", page(NOT_YET), etag=False, last_modified=False)
    task = await new_task(client, alice)
    first = await run_now(client, alice, task["id"])
    assert first["result"]["condition_met"] is False
    # Make the cached text say something the page does not: only a reused text can say it.
    async with app.state.torale.sessions() as session, session.begin():
        await session.execute(update(Page).values(text=ANNOUNCED, text_hash=text_hash(ANNOUNCED)))

    second = await run_now(client, alice, task["id"])
    assert fake_web.count("/newsroom") == 2
    assert fake_web.count_304("/newsroom") == 0
    assert second["usage"]["pages_not_modified"] == 0  # it was a 200
    assert ANNOUNCED in fake_model.chat_requests[-1].prompt_text
    assert second["result"]["condition_met"] is True

    fake_web.set_page("/newsroom", page(RESCHEDULED), etag=False, last_modified=False)
    third = await run_now(client, alice, task["id"])  # other bytes: read again
    assert RESCHEDULED in fake_model.chat_requests[-1].prompt_text
    assert third["result"]["current_state"] == {"release_date": "September 16"}


async def test_a_page_read_as_the_cache_has_it_is_not_written_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    """A 304 (or the same bytes) with the validators the cache holds leaves the page cache's
    row as it is; new validators or another text are written."""

    async def entry() -> Page:
        async with app.state.torale.sessions() as session:
            row: Page = (await session.scalars(select(Page))).one()
            return row

    task = await new_task(client, alice)
    await run_now(client, alice, task["id"])
    first = await entry()
    second_run = await run_now(client, alice, task["id"])
    assert second_run["usage"]["pages_not_modified"] == 1
    assert (await entry()).fetched_at == first.fetched_at  # not written again

    fake_web.set_page("/newsroom", page(RESCHEDULED))  # another body, another ETag
    await run_now(client, alice, task["id"])
    changed = await entry()
    assert changed.fetched_at > first.fetched_at
    assert changed.etag != first.etag
    assert "September 16" in changed.text


async def test_task_urls_are_read_with_search_results_deduplicated(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    fake_web.set_page("/blog", page(ANNOUNCED, title="A blog"))
    blog = fake_web.url + "/blog"
    fake_search.set_results(None, [(newsroom, "Apple Newsroom", ""), (blog, "A blog", "")])
    task = await new_task(client, alice, urls=[blog])
    execution = await run_now(client, alice, task["id"])
    assert execution["usage"]["pages_fetched"] == 2
    assert fake_web.count("/blog") == 1
    prompt = fake_model.last.prompt_text if fake_model.last else ""
    assert prompt.index(blog) < prompt.index(newsroom)  # the task's own pages first


async def test_search_provider_none_reads_only_the_tasks_urls(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
    newsroom: str,
) -> None:
    task = await new_task(client, alice, urls=[newsroom], config={"search_provider": "none"})
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success"
    assert execution["usage"]["search_calls"] == 0
    assert fake_search.calls == 0


async def test_rows_written_per_run(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb, newsroom: str
) -> None:
    task = await new_task(
        client,
        alice,
        notify_behavior="always",
        notifications=[{"type": "email", "address": "a@example.com"}],
    )
    fake_web.set_page("/newsroom", page(ANNOUNCED))
    await run_now(client, alice, task["id"])
    await run_now(client, alice, task["id"])
    async with app.state.torale.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Delivery))
    assert count == 2  # one delivery per (execution, channel)


async def test_nul_characters_in_pages_and_results_do_not_fail_runs(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
) -> None:
    """NUL cannot be stored in PostgreSQL text or JSON: text from outside is stored without it."""
    fake_web.set_page(
        "/plain", b"Apple\x00 announced\x00 the iPhone 18 release.", content_type="text/plain"
    )
    fake_web.set_page("/html", page(f"{ANNOUNCED}\x00 Pre-orders open\x00 soon.", title="Ne\x00ws"))
    plain, html = fake_web.url + "/plain", fake_web.url + "/html"
    fake_search.set_results(None, [(html, "Apple\x00 Newsroom", "snip\x00pet")])
    # The model's answer is stored too.
    answer = {**MET, "answer": "Septem\x00ber 9", "current_state": {"da\x00te": "Sep\x009"}}
    fake_model.script = verdict_rules([(ANNOUNCED, answer)], default=NOT_MET)
    task = await new_task(client, alice, urls=[plain])
    for _ in range(2):  # the second run reads the stored pages back (304s)
        execution = await run_now(client, alice, task["id"])
        assert execution["status"] == "success", execution["error_message"]
        assert execution["usage"]["pages_fetched"] == 2
        assert execution["result"]["answer"] == "September 9"
        assert execution["result"]["current_state"] == {"date": "Sep9"}
    assert fake_model.last is not None
    assert "\x00" not in fake_model.last.prompt_text
    assert "Apple announced the iPhone 18 release." in fake_model.last.prompt_text
    async with app.state.torale.sessions() as session:
        stored = list(await session.scalars(select(Page)))
    assert len(stored) == 2
    assert all("\x00" not in p.text and "\x00" not in (p.title or "") for p in stored)
