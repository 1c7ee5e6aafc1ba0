"""GET /metrics in the Prometheus text format: HTTP traffic, plus users and tasks at scrape time.

Requests are labelled by route template (`/api/v1/tasks/{task_id}`), never by raw path, so the
number of series stays bounded whatever clients send. Each process counts its own traffic;
scrape every process.
"""

from __future__ import annotations

import hmac
import logging
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from torale.db.models import Task, User
from torale.errors import AuthenticationError
from torale.scope_state import ROUTE_TEMPLATE
from torale.state import app_state
from torale.statuses import TaskState

logger = logging.getLogger("torale.metrics")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class Metrics:
    """The collectors of one app (a registry each, so several apps in one process stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "torale_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "torale_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.users = Gauge(
            "torale_users", "Users, by whether they are active.", ["active"], registry=self.registry
        )
        self.tasks = Gauge("torale_tasks", "Tasks, by state.", ["state"], registry=self.registry)
        self.database_up = Gauge(
            "torale_database_up",
            "1 when the database answered the last scrape.",
            registry=self.registry,
        )
        # `.labels()` locks and builds keys on every call; the label sets are few and bounded
        # (route templates, methods, statuses), so keep the children.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def children(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        key = (method, route, status)
        found = self._children.get(key)
        if found is None:
            found = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
            self._children[key] = found
        return found


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or scope.get("state", {}).get(
                ROUTE_TEMPLATE, "unmatched"
            )
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            counter, histogram = self.metrics.children(method, template, status)
            counter.inc()
            histogram.observe(time.perf_counter() - started)


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Text exposition format. No auth unless `TORALE_METRICS_TOKEN` is set, then "
    "`Authorization: Bearer <token>`.",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"}},
)
async def metrics(request: Request) -> Response:
    state = app_state(request)
    token = state.settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
            raise AuthenticationError("Metrics need `Authorization: Bearer <TORALE_METRICS_TOKEN>`")
    collectors = state.metrics
    try:
        async with state.sessions() as session:
            users = await session.execute(
                select(User.is_active, func.count()).group_by(User.is_active)
            )
            tasks = await session.execute(select(Task.state, func.count()).group_by(Task.state))
            user_counts = {bool(active): n for active, n in users}
            task_counts = {task_state: n for task_state, n in tasks}
    except Exception:
        logger.warning("metrics: database unavailable", exc_info=True)
        collectors.database_up.set(0)
    else:
        collectors.database_up.set(1)
        for active in (True, False):
            collectors.users.labels(str(active).lower()).set(user_counts.get(active, 0))
        for task_state in TaskState:
            collectors.tasks.labels(task_state).set(task_counts.get(task_state, 0))
    return Response(generate_latest(collectors.registry), media_type=CONTENT_TYPE_LATEST)
