"""GET /metrics: traffic by route template, users and tasks, optional token."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.users import ApiUser


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = (
        await client.post("/api/v1/tasks", json={"search_query": "q"}, headers=alice.headers)
    ).json()
    for _ in range(3):
        await client.get("/api/v1/tasks", headers=alice.headers)  # the fast path, after the first
    await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)
    await client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=alice.headers)
    await client.get("/no/such/path/1234")
    await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"state": "paused"}, headers=alice.headers
    )

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    found = samples(text)
    requests = "torale_http_requests_total"
    assert value(found, requests, method="POST", route="/api/v1/tasks", status="200") == 1
    assert value(found, requests, method="GET", route="/api/v1/tasks", status="200") == 3
    assert value(found, requests, method="GET", route="/api/v1/tasks/{task_id}", status="200") == 1
    assert value(found, requests, method="GET", route="/api/v1/tasks/{task_id}", status="404") == 1
    assert value(found, requests, method="GET", route="unmatched", status="404") == 1
    assert (
        value(
            found, "torale_http_request_duration_seconds_count", method="GET", route="/api/v1/tasks"
        )
        == 3
    )
    # Raw paths and ids never become labels.
    assert task["id"] not in text
    assert "/no/such/path" not in text
    assert value(found, "torale_tasks", state="paused") == 1
    assert value(found, "torale_tasks", state="active") == 0
    assert value(found, "torale_users", active="true") == 1
    assert value(found, "torale_database_up") == 1


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": "scrape-me"}])
async def test_metrics_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"].startswith("Metrics need")
    right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert right.status_code == 200
    assert "torale_http_requests_total" in right.text
