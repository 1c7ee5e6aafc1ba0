"""A webhook receiver that checks Standard Webhooks signatures, and fails when told to.

`WebhookReceiver` accepts POSTs on any path. With a `secret` it verifies every request with the
`standardwebhooks` package (`Webhook(secret).verify(body, headers)`), as a real receiver would,
and answers 401 to a request that does not verify; without one it only records (an Apprise
`json://` endpoint, a redirect target). What it answers is scripted:

* `answer_next(Answer(status=503), Answer(delay=3.0))` — the next requests, in order;
* `fail_next(n, status)` (inherited) — the next `n` requests fail with `status`;
* `set_default(Answer(status=410))` — every request after the scripted ones (default 200);
* `redirect_to(url)` — answer every request with a redirect;
* `stop()` / `restart()` (inherited) — down for a while, then back on the same port.

Every request is kept, on arrival in `requests`, and once answered as a `ReceivedWebhook` in
`received` (what came, whether it verified, what was answered). The server runs in its own
thread; from async tests wait with `await receiver.wait_for(n)` / `wait_for_arrivals(n)`,
which never block the test's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import FakeService, RecordedRequest

__all__ = ["Answer", "ReceivedWebhook", "WebhookReceiver"]


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one request: after `delay` seconds, with `status`."""

    status: int = 200
    delay: float = 0.0
    location: str | None = None  # for redirects


@dataclass(frozen=True)
class ReceivedWebhook:
    """One request as the receiver saw it, and what it answered."""

    request: RecordedRequest
    verified: bool  # the signature checked out with the receiver's secret at that moment
    verify_error: str | None
    status: int

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def headers(self) -> dict[str, str]:
        return self.request.headers

    @property
    def body(self) -> bytes:
        return self.request.body

    @property
    def webhook_id(self) -> str | None:
        return self.request.headers.get("webhook-id")

    @property
    def event(self) -> Any:
        return self.request.json()

    @property
    def accepted(self) -> bool:
        """Verified (when the receiver has a secret) and answered with 2xx."""
        return 200 <= self.status < 300


class WebhookReceiver(FakeService):
    def __init__(
        self, secret: str | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._secret = secret
        self._script: deque[Answer] = deque()
        self._default = Answer()
        self._received: list[ReceivedWebhook] = []
        self._received_lock = threading.Lock()
        super().__init__(host=host, port=port)

    # -- configuration -----------------------------------------------------------------------
    @property
    def secret(self) -> str | None:
        with self._lock:
            return self._secret

    @secret.setter
    def secret(self, value: str | None) -> None:
        with self._lock:
            self._secret = value

    def answer_next(self, *answers: Answer) -> None:
        """Answer the next requests so, in order (after any failures queued by fail_next)."""
        with self._lock:
            self._script.extend(answers)

    def set_default(self, answer: Answer) -> None:
        """How every request is answered once the scripted answers are used up."""
        with self._lock:
            self._default = answer

    def redirect_to(self, location: str, status: int = 307) -> None:
        self.set_default(Answer(status=status, location=location))

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._script.clear()
            self._default = Answer()
        with self._received_lock:
            self._received.clear()

    # -- observation -------------------------------------------------------------------------
    @property
    def received(self) -> list[ReceivedWebhook]:
        """Every request answered so far, in the order they arrived."""
        with self._received_lock:
            return sorted(self._received, key=lambda r: r.request.at)

    def accepted(self) -> list[ReceivedWebhook]:
        """The requests answered with 2xx (for a receiver with a secret: verified ones)."""
        return [r for r in self.received if r.accepted]

    def webhook_ids(self) -> list[str | None]:
        return [r.webhook_id for r in self.received]

    async def wait_for_arrivals(
        self, count: int, *, timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Wait until `count` requests have arrived (answered or not yet); return them."""
        deadline = time.monotonic() + timeout
        while len(arrived := self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self!r} got {len(arrived)} of {count} requests")
            await asyncio.sleep(0.01)
        return arrived

    async def wait_for(
        self, count: int, *, accepted: bool = True, timeout: float = 10.0
    ) -> list[ReceivedWebhook]:
        """Wait (without blocking the event loop) until `count` requests (accepted ones by
        default) have been answered; return them. Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.accepted() if accepted else self.received
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self!r} got {len(got)} of {count} expected requests in {timeout} s: "
                    f"{[(r.path, r.status, r.verify_error) for r in self.received]}"
                )
            await asyncio.sleep(0.02)

    # -- the app -----------------------------------------------------------------------------
    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST", "PUT"])])

    def _verify(self, record: RecordedRequest) -> tuple[bool, str | None]:
        secret = self.secret
        if secret is None:
            return False, "no secret to verify with"
        try:
            Webhook(secret).verify(record.body, record.headers)
        except WebhookVerificationError as exc:
            return False, str(exc) or type(exc).__name__
        except Exception as exc:  # a secret standardwebhooks cannot even read
            return False, f"{type(exc).__name__}: {exc}"
        return True, None

    async def _receive(self, request: Request) -> Response:
        record, failure = await self._admit(request)
        verified, error = self._verify(record)
        with self._lock:
            scripted = None if failure else (self._script.popleft() if self._script else None)
            answer = scripted or self._default
            must_verify = self._secret is not None
        if answer.delay:
            await asyncio.sleep(answer.delay)
        response: Response
        if must_verify and not verified:
            response = JSONResponse({"error": f"bad signature: {error}"}, 401)
        elif failure is not None:
            response = self.error_response(failure)
        elif answer.location is not None:
            response = Response(status_code=answer.status, headers={"location": answer.location})
        else:
            response = JSONResponse({"received": True}, answer.status)
        with self._received_lock:
            self._received.append(ReceivedWebhook(record, verified, error, response.status_code))
        return response
