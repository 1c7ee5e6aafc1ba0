"""Fake search APIs: SearXNG (JSON format), Tavily and Brave Web Search.

Results are configured per query with `set_results(query, [(url, title, snippet), ...])`;
`set_results(None, ...)` sets the default for queries without their own results.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .server import Failure, FakeService

__all__ = ["FakeBrave", "FakeSearxng", "FakeTavily", "Hit", "SearchFake"]

Hit = tuple[str, str, str]
"""A search result: (url, title, snippet)."""


class SearchFake(FakeService):
    """Common result store for the search fakes.

    Lookup order for a query: exact match (whitespace-trimmed, case-insensitive), then the
    longest configured query contained in it, then the default (`None`), then no results.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self._results: dict[str | None, list[Hit]] = {}

    def set_results(self, query: str | None, results: Sequence[Hit]) -> None:
        key = None if query is None else query.strip().lower()
        with self._lock:
            self._results[key] = [(str(u), str(t), str(s)) for u, t, s in results]

    def clear_results(self) -> None:
        with self._lock:
            self._results.clear()

    def results_for(self, query: str) -> list[Hit]:
        key = query.strip().lower()
        with self._lock:
            if key in self._results:
                return list(self._results[key])
            contained = [k for k in self._results if k is not None and k and k in key]
            if contained:
                return list(self._results[max(contained, key=len)])
            return list(self._results.get(None, []))

    @property
    def queries(self) -> list[str]:
        """The query of every request received, in order ('' when it had none)."""
        return [self._query_of(r.method, r.query, r.body) for r in self.requests]

    @staticmethod
    def _query_of(method: str, query: dict[str, str], body: bytes) -> str:
        if "q" in query:
            return query["q"]
        if method == "POST" and body:
            try:
                data = json.loads(body)
            except ValueError:
                return ""
            if isinstance(data, dict):
                return str(data.get("query", data.get("q", "")))
        return ""

    def reset(self) -> None:
        """Forget requests, failures, delays and configured results."""
        super().reset()
        self.clear_results()


class FakeSearxng(SearchFake):
    """SearXNG ``GET|POST /search?q=...&format=json``.

    `json_enabled=False` mimics an instance whose settings.yml lacks the json format (403).
    """

    def __init__(
        self, *, json_enabled: bool = True, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host=host, port=port)
        self.json_enabled = json_enabled

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/search", self._search, methods=["GET", "POST"])])

    def error_response(self, failure: Failure) -> Response:
        if failure.body is not None:
            return super().error_response(failure)
        return HTMLResponse(
            f"<html><body><h1>Error {failure.status}</h1></body></html>",
            failure.status,
            headers=self._failure_headers(failure),
        )

    async def _search(self, request: Request) -> Response:
        _, failure = await self._admit(request)
        if failure is not None:
            return self.error_response(failure)
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            params.update({k: str(v) for k, v in form.items()})
        query = params.get("q", "")
        fmt = params.get("format", "html")
        if (fmt == "json" and not self.json_enabled) or fmt not in ("html", "json"):
            return Response("Forbidden", 403, media_type="text/plain")
        hits = self.results_for(query) if query else []
        if fmt == "html":
            items = "".join(
                f'<article class="result"><a href="{html.escape(u)}">{html.escape(t)}</a>'
                f"<p>{html.escape(s)}</p></article>"
                for u, t, s in hits
            )
            return HTMLResponse(f"<html><body><div id='urls'>{items}</div></body></html>")
        results = [
            {
                "url": url,
                "title": title,
                "content": snippet,
                "engine": "fake",
                "engines": ["fake"],
                "positions": [i + 1],
                "score": round(1.0 / (i + 1), 4),
                "category": "general",
                "parsed_url": list(urlsplit(url)),
                "template": "default.html",
            }
            for i, (url, title, snippet) in enumerate(hits)
        ]
        return JSONResponse(
            {
                "query": query,
                "number_of_results": len(results),
                "results": results,
                "answers": [],
                "corrections": [],
                "infoboxes": [],
                "suggestions": [],
                "unresponsive_engines": [],
            }
        )


class FakeTavily(SearchFake):
    """Tavily ``POST /search`` (key in the JSON ``api_key`` or ``Authorization: Bearer``)."""

    def __init__(
        self, *, api_key: str = "tvly-test-key", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/search", self._search, methods=["POST"])])

    def error_response(self, failure: Failure) -> Response:
        body = failure.body
        if body is None:
            messages = {
                400: "Bad request.",
                401: "Unauthorized: missing or invalid API key.",
                429: "Your request has been blocked due to excessive requests.",
                432: "This request exceeds your plan's set usage limit.",
            }
            body = {"detail": {"error": messages.get(failure.status, "Internal server error.")}}
        return JSONResponse(body, failure.status, headers=self._failure_headers(failure))

    async def _search(self, request: Request) -> Response:
        record, failure = await self._admit(request)
        if failure is not None:
            return self.error_response(failure)
        try:
            data = record.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return self.error_response(Failure(400, {"detail": {"error": "Invalid JSON body."}}))
        auth = record.headers.get("authorization", "")
        keys = {str(data.get("api_key") or ""), auth.removeprefix("Bearer ").strip()}
        if self.api_key not in keys:
            return self.error_response(Failure(401))
        query = data.get("query")
        if not isinstance(query, str) or not query.strip():
            return self.error_response(Failure(400, {"detail": {"error": "Query is missing."}}))
        try:
            max_results = int(data.get("max_results", 5))
        except (TypeError, ValueError):
            max_results = 5
        hits = self.results_for(query)[: max(0, min(max_results, 20))]
        results = [
            {
                "url": url,
                "title": title,
                "content": snippet,
                "score": round(0.99 - 0.05 * i, 4),
                "raw_content": None,
            }
            for i, (url, title, snippet) in enumerate(hits)
        ]
        body: dict[str, Any] = {
            "query": query,
            "follow_up_questions": None,
            "answer": None,
            "images": [],
            "results": results,
            "response_time": 0.01,
            "request_id": str(uuid.uuid4()),
        }
        return JSONResponse(body)


class FakeBrave(SearchFake):
    """Brave Web Search ``GET /res/v1/web/search?q=...&count=N`` with ``X-Subscription-Token``.

    A missing token (or `q`) gives 422 VALIDATION, a wrong token 401 SUBSCRIPTION_TOKEN_INVALID.
    """

    def __init__(
        self, *, api_key: str = "brave-test-key", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/res/v1/web/search", self._search, methods=["GET"])])

    @staticmethod
    def _error_body(status: int, code: str, detail: str, meta: Any = None) -> dict[str, Any]:
        return {
            "type": "ErrorResponse",
            "error": {
                "id": str(uuid.uuid4()),
                "status": status,
                "code": code,
                "detail": detail,
                "meta": meta or {},
            },
            "time": int(time.time()),
        }

    def error_response(self, failure: Failure) -> Response:
        body = failure.body
        if body is None:
            codes = {
                401: ("SUBSCRIPTION_TOKEN_INVALID", "The provided subscription token is invalid."),
                422: ("VALIDATION", "Unable to validate request parameter(s)."),
                429: ("RATE_LIMITED", "Request rate limit exceeded for plan."),
            }
            code, detail = codes.get(failure.status, ("INTERNAL_ERROR", "Internal error."))
            body = self._error_body(failure.status, code, detail)
        return JSONResponse(body, failure.status, headers=self._failure_headers(failure))

    def _validation_error(self, location: list[str]) -> Response:
        meta = {"errors": [{"type": "missing", "loc": location, "msg": "Field required"}]}
        body = self._error_body(422, "VALIDATION", "Unable to validate request parameter(s).", meta)
        return JSONResponse(body, 422)

    async def _search(self, request: Request) -> Response:
        record, failure = await self._admit(request)
        if failure is not None:
            return self.error_response(failure)
        token = record.headers.get("x-subscription-token")
        if token is None:
            return self._validation_error(["header", "x-subscription-token"])
        if token != self.api_key:
            return self.error_response(Failure(401))
        query = record.query.get("q", "")
        if not query.strip():
            return self._validation_error(["query", "q"])
        try:
            count = int(record.query.get("count", "20"))
            offset = int(record.query.get("offset", "0"))
        except ValueError:
            return self._validation_error(["query", "count"])
        hits = self.results_for(query)
        page = hits[offset * count : offset * count + max(0, min(count, 20))]
        results = []
        for url, title, snippet in page:
            parts = urlsplit(url)
            results.append(
                {
                    "type": "search_result",
                    "title": title,
                    "url": url,
                    "description": snippet,
                    "is_source_local": False,
                    "is_source_both": False,
                    "language": "en",
                    "family_friendly": True,
                    "profile": {"name": parts.hostname or "", "url": url, "long_name": ""},
                    "meta_url": {
                        "scheme": parts.scheme,
                        "netloc": parts.netloc,
                        "hostname": parts.hostname or "",
                        "path": parts.path,
                    },
                }
            )
        body = {
            "type": "search",
            "query": {
                "original": query,
                "more_results_available": len(hits) > offset * count + len(page),
            },
            "mixed": {
                "type": "mixed",
                "main": [{"type": "web", "index": i, "all": False} for i in range(len(results))],
            },
            "web": {"type": "search", "results": results, "family_friendly": True},
        }
        return JSONResponse(body)
