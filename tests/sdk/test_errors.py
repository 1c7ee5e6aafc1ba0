"""HTTP errors become exceptions; transient failures are retried with bounded backoff.

The mapping is checked against the real server (401, 403, 404, 409, 422, and 429 from a second
server limited to 2 requests a minute) and against a scripted local server for the statuses the
real one does not produce on demand (400, 5xx, non-JSON bodies) and for the retry policy.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

import torale.sdk.transport as transport
from tests.fakes import LocalServer
from tests.fixtures.api_server import (
    KEY_RE,
    Api,
    Fakes,
    MakeUser,
    bootstrap_key,
    server_env,
    start_torale,
)
from tests.fixtures.processes import free_port
from tests.fixtures.sdk_examples import QUERY, UNKNOWN_ID
from torale.cli import app as cli_app
from torale.sdk import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    Torale,
    ToraleAsync,
    User,
    ValidationError,
)
from torale.sdk.transport import call, send

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
ME = {
    "id": str(uuid.uuid4()),
    "email": "scripted@example.com",
    "first_name": None,
    "role": "user",
    "is_active": True,
    "created_at": "2026-01-01T00:00:00Z",
}


# --- against the real server ------------------------------------------------------------


@pytest.fixture
def client(api: Api, user_key: str) -> Iterator[Torale]:
    with Torale(api_key=user_key, api_url=api.url) as c:
        yield c


def test_unknown_task_is_not_found(client: Torale) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.tasks.get(UNKNOWN_ID)
    error = missing.value
    assert isinstance(error, APIError)
    assert error.status_code == 404
    assert error.message == "Task not found"
    assert str(error) == "Task not found"
    assert error.body == {"detail": "Task not found"}
    for attempt in (
        lambda: client.tasks.update(UNKNOWN_ID, name="x"),
        lambda: client.tasks.delete(UNKNOWN_ID),
        lambda: client.tasks.execute(UNKNOWN_ID),
        lambda: list(client.tasks.executions(UNKNOWN_ID)),
        lambda: list(client.tasks.notifications(UNKNOWN_ID)),
        lambda: client.auth.revoke_api_key(UNKNOWN_ID),
    ):
        with pytest.raises(NotFoundError):
            attempt()


def test_validation_errors_carry_the_fields(client: Torale) -> None:
    with pytest.raises(ValidationError) as refused:
        client.tasks.create(QUERY, schedule="not a cron", timezone="Mars/Olympus_Mons")
    error = refused.value
    assert error.status_code == 422
    by_loc = {tuple(e["loc"]): e for e in error.errors}
    assert set(by_loc) == {("body", "schedule"), ("body", "timezone")}
    assert by_loc[("body", "schedule")]["type"] == "cron_invalid"
    assert by_loc[("body", "timezone")]["type"] == "timezone_invalid"
    assert "schedule: " in error.message
    assert "timezone: " in error.message
    assert "Mars" not in str(error.body)  # input is never echoed back

    with pytest.raises(ValidationError) as too_often:
        client.tasks.create(QUERY, schedule="*/2 * * * *")
    assert [e["loc"] for e in too_often.value.errors] == [["body", "schedule"]]

    task = client.tasks.create(QUERY)
    with pytest.raises(ValidationError) as unknown:
        client.tasks.update(task.id, colour="blue")
    assert [e["loc"] for e in unknown.value.errors] == [["body", "colour"]]
    with pytest.raises(ValidationError):
        list(client.tasks.list(state="sleeping"))


def test_a_refused_state_change_is_a_conflict(client: Torale) -> None:
    task = client.tasks.create(QUERY, state="paused")
    with pytest.raises(ConflictError) as conflict:
        client.tasks.update(task.id, state="completed")
    assert conflict.value.status_code == 409
    assert "paused" in conflict.value.message


def test_bad_or_missing_key_is_an_authentication_error(api: Api) -> None:
    with Torale(api_key="sk_" + "x" * 43, api_url=api.url) as wrong:
        with pytest.raises(AuthenticationError) as bad:
            wrong.auth.me()
        with pytest.raises(AuthenticationError):
            wrong.tasks.create(QUERY)
    assert bad.value.status_code == 401
    assert bad.value.message
    with Torale(api_url=api.url) as anonymous:
        assert anonymous.policy.api_key is None
        with pytest.raises(AuthenticationError):
            list(anonymous.tasks.list())


def test_a_deactivated_account_and_an_admin_route_are_permission_denied(
    api: Api, make_user: MakeUser
) -> None:
    key = make_user("deactivated")
    with Torale(api_key=key, api_url=api.url) as user:
        user_id = user.auth.me().id
        with pytest.raises(PermissionDeniedError) as admin_only:
            send(user.http, user.policy, call("GET", "/admin/stats", dict[str, Any]))
        assert admin_only.value.status_code == 403

        response = httpx.patch(
            f"{api.url}/admin/users/{user_id}/deactivate",
            headers={"Authorization": f"Bearer {api.admin_key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        with pytest.raises(PermissionDeniedError) as denied:
            user.auth.me()
    assert denied.value.status_code == 403
    assert denied.value.message == denied.value.body["detail"]


async def test_async_errors_map_the_same(api: Api) -> None:
    async with ToraleAsync(api_key="sk_nope", api_url=api.url) as wrong:
        with pytest.raises(AuthenticationError):
            await wrong.auth.me()
    async with ToraleAsync(api_key=api.admin_key, api_url=api.url) as admin:
        with pytest.raises(NotFoundError):
            await admin.tasks.get(UNKNOWN_ID)
        with pytest.raises(ValidationError) as refused:
            await admin.tasks.create(QUERY, timezone="Nowhere/Else")
        assert refused.value.errors[0]["loc"] == ["body", "timezone"]


# --- 429 from a server limited to 2 requests a minute ------------------------------------


@dataclass(frozen=True)
class LimitedApi:
    url: str
    new_key: Callable[[], str]


@pytest.fixture(scope="module")
def limited(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedApi]:
    env = server_env(fakes, TORALE_RATE_LIMITS="2/minute")
    server, data_dir = start_torale(tmp_path_factory.mktemp("torale-limited"), env)

    def new_key() -> str:
        result = CliRunner().invoke(
            cli_app,
            ["keys", "create", "--email", f"limited-{uuid.uuid4().hex[:8]}@example.com"],
            env={"TORALE_DATA_DIR": str(data_dir), "TORALE_LOG_LEVEL": "warning"},
        )
        assert result.exit_code == 0, result.output
        match = KEY_RE.search(result.stdout)
        assert match, result.output
        return match.group(0)

    try:
        assert bootstrap_key(server)
        yield LimitedApi(url=server.base_url, new_key=new_key)
    finally:
        server.stop()


@pytest.fixture
def limited_key(limited: LimitedApi) -> str:
    """A key of its own, with a full budget of 2 requests."""
    return limited.new_key()


def test_429_is_a_rate_limit_error_with_retry_after(limited: LimitedApi, limited_key: str) -> None:
    with Torale(api_key=limited_key, api_url=limited.url, max_retries=0) as client:
        client.auth.me()
        list(client.tasks.list())
        started = time.monotonic()
        with pytest.raises(RateLimitError) as limit:
            client.auth.me()
        assert time.monotonic() - started < 5  # max_retries=0: no waiting
    error = limit.value
    assert error.status_code == 429
    assert error.message == "Rate limit exceeded: 2 per 1 minute"
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 60


async def test_429_async(limited: LimitedApi, limited_key: str) -> None:
    async with ToraleAsync(api_key=limited_key, api_url=limited.url, max_retries=0) as c:
        await c.auth.me()
        await c.auth.me()
        with pytest.raises(RateLimitError) as limit:
            await c.tasks.create(QUERY)
    assert limit.value.retry_after is not None
    assert 0 < limit.value.retry_after <= 60


# --- a scripted server: statuses on demand, and the retry policy --------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: ME)
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None  # a non-JSON body
    delay: float = 0.0  # seconds before answering


class ScriptedApi:
    """Answers each request with the next scripted reply (then 200 with ME); records them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self.requests: list[tuple[str, str]] = []
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app = Starlette(routes=[Route("/{path:path}", self._answer, methods=methods)])
        self.server = LocalServer(app)

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self.requests.clear()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    async def _answer(self, request: Request) -> Response:
        with self._lock:
            self.requests.append((request.method, request.url.path))
            reply = self._replies.popleft() if self._replies else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.text is not None:
            return PlainTextResponse(reply.text, reply.status, headers=reply.headers)
        return JSONResponse(reply.body, reply.status, headers=reply.headers)


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[ScriptedApi]:
    api = ScriptedApi()
    with api.server:
        yield api


@pytest.fixture
def scripted(scripted_server: ScriptedApi) -> ScriptedApi:
    scripted_server.reset()
    return scripted_server


Action = Literal["me", "create", "delete", "update"]


def run(
    mode: Mode,
    url: str,
    action: Action,
    *,
    max_retries: int = 3,
    backoff: float = 0.01,
    timeout: float = 60,
) -> Any:
    """One SDK call, sync or async, with a short backoff."""
    options: dict[str, Any] = {"api_key": "sk_test", "api_url": url, "max_retries": max_retries}
    if mode == "sync":
        with Torale(timeout=timeout, **options) as client:
            client.policy.backoff = backoff
            if action == "me":
                return client.auth.me()
            if action == "create":
                return client.tasks.create(QUERY)
            if action == "update":
                return client.tasks.update(UNKNOWN_ID, name="x")
            return client.tasks.delete(UNKNOWN_ID)

    async def arun() -> Any:
        async with ToraleAsync(timeout=timeout, **options) as client:
            client.policy.backoff = backoff
            if action == "me":
                return await client.auth.me()
            if action == "create":
                return await client.tasks.create(QUERY)
            if action == "update":
                return await client.tasks.update(UNKNOWN_ID, name="x")
            return await client.tasks.delete(UNKNOWN_ID)

    return asyncio.run(arun())


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (Reply(400, {"detail": "Bad request"}), ValidationError),
        (Reply(401, {"detail": "Invalid or missing credentials"}), AuthenticationError),
        (Reply(403, {"detail": "Account deactivated"}), PermissionDeniedError),
        (Reply(404, {"detail": "Task not found"}), NotFoundError),
        (Reply(409, {"detail": "A paused task cannot become completed"}), ConflictError),
        (Reply(413, {"detail": "Request body too large"}), APIError),
        (Reply(500, {"detail": "Internal server error"}), APIError),
        (Reply(418, {"detail": "I'm a teapot"}), APIError),
    ],
)
def test_status_to_exception(scripted: ScriptedApi, reply: Reply, kind: type[APIError]) -> None:
    scripted.script(reply)
    with pytest.raises(APIError) as raised:
        run("sync", scripted.server.url, "me")
    assert type(raised.value) is kind
    assert raised.value.status_code == reply.status
    assert raised.value.message == reply.body["detail"]
    assert scripted.count == 1  # none of these is retried


def test_a_400_is_a_validation_error_without_fields(scripted: ScriptedApi) -> None:
    scripted.script(Reply(400, {"detail": "Give a URL"}))
    with pytest.raises(ValidationError) as refused:
        run("sync", scripted.server.url, "me")
    assert refused.value.errors == []


def test_a_non_json_error_body(scripted: ScriptedApi) -> None:
    scripted.script(Reply(500, text="upstream exploded"))
    with pytest.raises(APIError) as raised:
        run("sync", scripted.server.url, "me")
    assert (raised.value.status_code, raised.value.message) == (500, "HTTP 500")
    assert raised.value.body == "upstream exploded"


def test_a_scripted_429_carries_retry_after(scripted: ScriptedApi) -> None:
    scripted.script(Reply(429, {"detail": "Rate limit exceeded"}, {"Retry-After": "7"}))
    with pytest.raises(RateLimitError) as limit:
        run("sync", scripted.server.url, "me", max_retries=0)
    assert limit.value.retry_after == 7.0


@pytest.mark.parametrize("mode", MODES)
def test_503_twice_then_success(scripted: ScriptedApi, mode: Mode) -> None:
    scripted.script(Reply(503, {"detail": "busy"}), Reply(503, {"detail": "busy"}))
    me = run(mode, scripted.server.url, "me")
    assert isinstance(me, User)
    assert me.email == "scripted@example.com"
    assert scripted.requests == [("GET", "/auth/me")] * 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_reads_are_retried_on_transient_statuses(
    scripted: ScriptedApi, mode: Mode, status: int
) -> None:
    scripted.script(Reply(status, {"detail": "transient"}, {"Retry-After": "0"}))
    assert isinstance(run(mode, scripted.server.url, "me"), User)
    assert scripted.count == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [502, 504])
def test_post_is_not_retried_on_502_or_504(scripted: ScriptedApi, mode: Mode, status: int) -> None:
    scripted.script(Reply(status, {"detail": "Search provider failed"}))
    with pytest.raises(APIError) as raised:
        run(mode, scripted.server.url, "create")
    assert type(raised.value) is APIError
    assert raised.value.status_code == status
    assert scripted.requests == [("POST", "/api/v1/tasks")]


@pytest.mark.parametrize("mode", MODES)
def test_post_is_retried_on_503_and_429(scripted: ScriptedApi, mode: Mode) -> None:
    scripted.script(
        Reply(503, {"detail": "busy"}),
        Reply(429, {"detail": "slow down"}, {"Retry-After": "0"}),
        Reply(422, {"detail": [{"loc": ["body", "x"], "msg": "bad", "type": "t"}]}),
    )
    with pytest.raises(ValidationError) as refused:
        run(mode, scripted.server.url, "create")
    assert refused.value.errors == [{"loc": ["body", "x"], "msg": "bad", "type": "t"}]
    assert refused.value.message == "x: bad"
    assert scripted.requests == [("POST", "/api/v1/tasks")] * 3


def test_delete_is_retried_on_502_and_patch_is_not(scripted: ScriptedApi) -> None:
    scripted.script(Reply(502, {"detail": "bad gateway"}), Reply(204, None))
    assert run("sync", scripted.server.url, "delete") is None
    assert scripted.requests == [("DELETE", f"/api/v1/tasks/{UNKNOWN_ID}")] * 2
    scripted.script(Reply(502, {"detail": "bad gateway"}))
    with pytest.raises(APIError):
        run("sync", scripted.server.url, "update")
    assert scripted.requests[2:] == [("PATCH", f"/api/v1/tasks/{UNKNOWN_ID}")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("max_retries", [0, 2, 3])
def test_retries_are_bounded(scripted: ScriptedApi, mode: Mode, max_retries: int) -> None:
    scripted.script(*[Reply(503, {"detail": "Scheduler unavailable"})] * 10)
    with pytest.raises(APIError) as raised:
        run(mode, scripted.server.url, "me", max_retries=max_retries)
    assert raised.value.status_code == 503
    assert raised.value.message == "Scheduler unavailable"
    assert scripted.count == max_retries + 1


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_is_honoured(scripted: ScriptedApi, mode: Mode) -> None:
    scripted.script(Reply(503, {"detail": "busy"}, {"Retry-After": "0.4"}))
    started = time.monotonic()
    run(mode, scripted.server.url, "me", backoff=0.001)
    assert time.monotonic() - started >= 0.4
    assert scripted.count == 2


def test_backoff_grows_without_retry_after(scripted: ScriptedApi) -> None:
    scripted.script(Reply(503, {"detail": "busy"}), Reply(503, {"detail": "busy"}))
    started = time.monotonic()
    run("sync", scripted.server.url, "me", backoff=0.1)
    assert time.monotonic() - started >= 0.1 + 0.2  # 0.1, then 0.2
    assert scripted.count == 3


def test_a_long_retry_after_is_capped(
    scripted: ScriptedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "MAX_BACKOFF", 0.2)
    scripted.script(Reply(429, {"detail": "later"}, {"Retry-After": "3600"}))
    started = time.monotonic()
    run("sync", scripted.server.url, "me")
    assert time.monotonic() - started < 3
    assert scripted.count == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_connection_is_retried_then_raised(mode: Mode) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(APIConnectionError) as raised:
        run(mode, url, "me", max_retries=2, backoff=0.1)
    elapsed = time.monotonic() - started
    assert 0.1 + 0.2 <= elapsed < 10  # backed off twice, then gave up
    assert raised.value.status_code is None
    assert "Cannot reach the Torale API" in raised.value.message


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_is_an_api_error(scripted: ScriptedApi, mode: Mode) -> None:
    """A server that does not answer in time: the caller gets the SDK's exception (as for a
    refused connection), never a raw httpx one, so `except APIError` and the CLI's exit 1
    cover it."""
    scripted.script(*[Reply(delay=1.0)] * 4)
    started = time.monotonic()
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the type is what is checked
        run(mode, scripted.server.url, "me", max_retries=0, timeout=0.2)
    assert time.monotonic() - started < 5
    assert isinstance(raised.value, APIError), repr(raised.value)
    assert raised.value.status_code is None


def test_a_server_back_in_time_is_reached() -> None:
    """Connection refused, then the server comes up: the retry gets through."""
    scripted = ScriptedApi()
    scripted.server.start()
    url = scripted.server.url
    scripted.server.stop()
    timer = threading.Timer(0.3, scripted.server.start)
    timer.start()
    try:
        me = run("sync", url, "me", max_retries=5, backoff=0.2)
        assert isinstance(me, User)
    finally:
        timer.join()
        scripted.server.stop()
