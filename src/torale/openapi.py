"""Examples in the OpenAPI document, so that `/docs` and `/redoc` show each operation in use.

`install(app)` makes `app.openapi()` add, to the document FastAPI generates, named examples for
every operation: its request body (when it takes one), its success answer and each error status
it declares. Examples are keyed by method and path template and built from a few shared objects
(one task, one execution, one user, …) so that they agree with each other; error messages are the
ones the code sends. tests/test_openapi.py checks that none is missing, that each one matches its
schema, and that request examples are accepted by the API.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from torale.db.database import CommitOutcomeUnknownError
from torale.engine.evaluate import NO_MODEL_FOR_MODE, NO_MODEL_MESSAGE
from torale.errors import ErrorBody
from torale.middleware import BodyTooLargeError
from torale.notify.outbox import notification_message
from torale.tasks.schedule import ACCEPTED
from torale.tasks.service import NO_BROWSER_FOR_RENDER

Examples = dict[str, dict[str, Any]]  # name → {"summary": …, "value": …}


@dataclass(frozen=True)
class Documented:
    """The examples of one operation. `errors` overrides COMMON for its statuses; `not_answered`
    names statuses declared for the whole router that this route never answers."""

    success: Examples | None
    request: Examples | None = None
    errors: dict[int, Examples] = field(default_factory=dict)
    not_answered: frozenset[int] = frozenset()


def example(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


def detail(name: str, summary: str, message: str) -> Examples:
    """An error in the documented shape: `{"detail": "…"}`."""
    return {name: example(summary, {"detail": message})}


def invalid(name: str, summary: str, loc: list[str | int], msg: str, type_: str) -> Examples:
    """A validation error (422): `{"detail": [{"loc", "msg", "type"}]}`."""
    return {name: example(summary, {"detail": [{"loc": loc, "msg": msg, "type": type_}]})}


# --- the shared objects ------------------------------------------------------------------------

USER_ID = "c61eb419-c803-4103-bd4c-21bea7adeb55"
TASK_ID = "c4545510-2520-4d70-b874-43cfb2f0e7a9"
EXECUTION_ID = "e571b3dd-953c-43e7-ab90-21bd2481b1c8"
FAILED_EXECUTION_ID = "61395dbf-a97a-461c-89ed-5fc36344a1fd"
KEY_ID = "a4d43ffd-5f2a-4a22-a96c-ade4d8e8345c"
DELIVERY_ID = "971ab6de-4611-49b7-83de-620fff466105"
ATTEMPT_ID = "7ed2e583-88d1-4b38-aa7e-0a298c37ee09"
API_KEY = "sk_5IYL_eRG_v7-nQ489v5Rm3tuzG69MZJlzD0CgVuhrys"  # `sk_` and 43 URL-safe characters
WEBHOOK_SECRET = "whsec_sBFmfP0H5/IH+PR6HEjWM7NGhHjCjPmUU//OXaSd3VI="  # noqa: S105 - made up for the example
HOOK_URL = "https://hooks.example.com/torale"
UNKNOWN_ID = "Input should be a valid UUID, invalid character: found `n` at 0"

TASK_REQUEST = {
    "name": "Next iPhone release date",
    "search_query": "When is the next iPhone released?",
    "condition_description": "Apple has announced the release date of the next iPhone",
    "urls": ["https://www.apple.com/newsroom/"],
    "schedule": "0 9 * * *",
    "timezone": "Europe/Berlin",
    "notify_behavior": "track_state",
    "notifications": [
        {"type": "webhook", "url": HOOK_URL, "headers": {"X-Receiver-Token": "rcv_7Qm2p9"}}
    ],
    "context": {"team": "mobile"},
}
PREVIEW_REQUEST = {
    key: TASK_REQUEST[key] for key in ("search_query", "condition_description", "urls")
}

SOURCES = [
    {
        "url": "https://www.apple.com/newsroom/2026/09/apple-introduces-iphone-18/",
        "title": "Apple introduces iPhone 18",
    },
    {"url": "https://www.apple.com/newsroom/", "title": "Newsroom - Apple"},
]
VERDICT = {
    "answer": "The iPhone 18 is released on Friday, September 18, 2026; pre-orders open on "
    "September 11.",
    "condition_met": True,
    "current_state": {"release_date": "2026-09-18", "preorders_open": "2026-09-11"},
    "reasoning": "Apple's newsroom announcement of September 9 names the release date.",
    "confidence": 0.93,
}
USAGE = {
    "llm_calls": 1,
    "input_tokens": 6214,
    "output_tokens": 187,
    "search_calls": 1,
    "pages_fetched": 4,
    "pages_not_modified": 1,
    "pages_failed": 0,
    "verdict_reused": False,
}
NO_USAGE = {key: False if key == "verdict_reused" else 0 for key in USAGE}
CHANGE_SUMMARY = "The condition is now met."

EXECUTION = {
    "id": EXECUTION_ID,
    "task_id": TASK_ID,
    "status": "success",
    "trigger": "schedule",
    "created_at": "2026-09-10T07:00:00Z",
    "started_at": "2026-09-10T07:00:01Z",
    "completed_at": "2026-09-10T07:00:38Z",
    "condition_met": True,
    "change_summary": CHANGE_SUMMARY,
    "result": VERDICT,
    "grounding_sources": SOURCES,
    "notification": notification_message(
        task_name=str(TASK_REQUEST["name"]),
        answer=str(VERDICT["answer"]),
        change_summary=CHANGE_SUMMARY,
        sources=SOURCES,
    ),
    "error_message": None,
    "usage": USAGE,
}
STARTED_EXECUTION = EXECUTION | {
    "id": FAILED_EXECUTION_ID,
    "status": "pending",
    "trigger": "manual",
    "created_at": "2026-09-10T12:31:05Z",
    "started_at": "2026-09-10T12:31:05Z",
    "completed_at": None,
    "condition_met": None,
    "change_summary": None,
    "result": None,
    "grounding_sources": [],
    "notification": None,
    "usage": NO_USAGE,
}
SEARCH_DOWN = "Search provider searxng did not answer in time after 3 attempts"
FAILED_EXECUTION = STARTED_EXECUTION | {
    "status": "failed",
    "trigger": "schedule",
    "created_at": "2026-09-09T07:00:00Z",
    "started_at": "2026-09-09T07:00:01Z",
    "completed_at": "2026-09-09T07:01:02Z",
    "error_message": SEARCH_DOWN,
    "usage": NO_USAGE | {"search_calls": 1},
}

MASKED_CHANNEL = {
    "type": "webhook",
    "url": HOOK_URL,
    "headers": {"X-Receiver-Token": "********"},  # header values are secrets
    "enabled": True,
}
DIFF_EXAMPLE = (
    "--- https://shop.example.com/espresso [#price] (before)\n"
    "+++ https://shop.example.com/espresso [#price] (after)\n"
    "@@ -1 +1 @@\n-$59.00\n+$49.00"
)
PRICE_LABEL = "https://shop.example.com/espresso [#price]"
RULES_EXAMPLE: dict[str, Any] = {
    "match": "all",
    "conditions": [
        {"kind": "number", "op": "<", "value": 50.0},
        {"kind": "number", "op": "drop_pct", "value": 10.0},
    ],
}
NEW_TASK = {
    "id": TASK_ID,
    "user_id": USER_ID,
    **{key: value for key, value in TASK_REQUEST.items() if key != "notifications"},
    "notifications": [MASKED_CHANNEL],
    "config": {},
    "targets": [{"url": "https://www.apple.com/newsroom/", "selector": None, "render": None}],
    "mode": "model",
    "rules": None,
    "change": None,
    "render": "plain",
    "screenshot": False,
    "executor_type": "llm_grounded_search",
    "state": "active",
    "paused_reason": None,
    "condition_met": False,
    "last_known_state": None,
    "last_notified_at": None,
    "next_run": "2026-08-26T07:00:00Z",
    "last_execution_id": None,
    "last_execution": None,
    "created_at": "2026-08-25T14:02:11Z",
    "updated_at": "2026-08-25T14:02:11Z",
    "state_changed_at": "2026-08-25T14:02:11Z",
    "is_active": True,
}
TASK = NEW_TASK | {
    "condition_met": True,
    "last_known_state": VERDICT["current_state"],
    "last_notified_at": "2026-09-10T07:00:38Z",
    "next_run": "2026-09-11T07:00:00Z",
    "last_execution_id": EXECUTION_ID,
    "last_execution": EXECUTION,
    "updated_at": "2026-09-10T07:00:38Z",
}
PAUSED_TASK = TASK | {
    "state": "paused",
    "is_active": False,
    "next_run": None,
    "updated_at": "2026-09-10T12:40:00Z",
    "state_changed_at": "2026-09-10T12:40:00Z",
}

USER = {
    "id": USER_ID,
    "email": "alice@example.com",
    "first_name": "Alice",
    "role": "user",
    "is_active": True,
    "created_at": "2026-08-25T13:58:40Z",
}
KEY_INFO = {
    "id": KEY_ID,
    "name": "laptop",
    "key_prefix": API_KEY[:12],
    "created_at": "2026-09-10T12:00:00Z",
    "last_used_at": None,
    "is_active": True,
}
ADMIN_USER = USER | {
    "task_count": 3,
    "active_task_count": 2,
    "last_activity": "2026-09-10T07:00:38Z",
}
WEBHOOK_CONFIG = {"url": HOOK_URL, "secret": WEBHOOK_SECRET, "enabled": True}
FEED_TOKEN_VALUE = "q8Zx1Vb0nRk3TfLw7HcYp2Gd9Ma5Je4Us6Ko_Ni-BtE"  # noqa: S105 - made up
FEEDS_AT = f"https://torale.example.com/feeds/{FEED_TOKEN_VALUE}"
FEED_TOKEN = {"active": True, "created_at": "2026-09-01T08:12:44Z"}
NO_FEED_TOKEN = {"active": False, "created_at": None}
FEED_TOKEN_CREATED = {
    "token": FEED_TOKEN_VALUE,
    "created_at": "2026-09-01T08:12:44Z",
    "notifications_url": f"{FEEDS_AT}/notifications.atom",
    "task_url_template": f"{FEEDS_AT}/tasks/{{task_id}}.atom",
}


def page(*items: Any, total: int | None = None) -> dict[str, Any]:
    return {
        "items": list(items),
        "total": len(items) if total is None else total,
        "page": 1,
        "limit": 20,
    }


def ok(summary: str, value: Any) -> Examples:
    return {"ok": example(summary, value)}


# --- errors --------------------------------------------------------------------------------------

# What every route declaring these statuses may answer, unless its own entry says better.
COMMON: dict[int, Examples] = {
    401: detail("invalid_key", "An unknown or revoked API key", "Invalid or revoked API key")
    | detail(
        "no_credentials",
        "No Authorization header",
        "Missing credentials: send `Authorization: Bearer <API key>`",
    ),
    403: detail("deactivated", "The account was deactivated", "This account is deactivated"),
    # A sign-in token seen for the first time creates its user: its email may be taken.
    409: detail(
        "email_taken",
        "A new sign-in token's email belongs to another account",
        "This email address already belongs to another account on this server",
    ),
    413: detail(
        "too_large",
        "The body is over TORALE_MAX_BODY_BYTES",
        BodyTooLargeError(1_048_576).detail,
    ),
    429: detail(
        "rate_limited",
        "Over a rate limit (see Retry-After)",
        "Rate limit exceeded: 100 per 1 minute",
    ),
    503: detail(
        "database_unavailable",
        "The database does not answer",
        "The database is unavailable; try again shortly",
    ),
    504: detail(
        "outcome_unknown",
        "The database stopped answering during a commit",
        CommitOutcomeUnknownError.detail,
    ),
}
ADMIN_ONLY = detail("not_admin", "The caller is not an admin", "Admin role required") | COMMON[403]
TASK_NOT_FOUND = detail("not_found", "An unknown task, or another user's", "Task not found")
BAD_TASK_ID = invalid(
    "bad_id", "The id is not a UUID", ["path", "task_id"], UNKNOWN_ID, "uuid_parsing"
)
BAD_LIMIT = invalid(
    "bad_limit",
    "limit over 100",
    ["query", "limit"],
    "Input should be less than or equal to 100",
    "less_than_equal",
)
CONCURRENT = detail(
    "concurrent_change",
    "A concurrent change conflicted with this one",
    "A concurrent change conflicted with this one; try again",
)
SCHEDULER_DOWN = detail(
    "scheduler_unavailable",
    "The scheduler (Temporal) cannot take the change",
    "The scheduler is unavailable (cannot reach Temporal at 127.0.0.1:7233); nothing was changed",
)
TASK_INVALID = (
    invalid(
        "bad_schedule",
        "Not a cron expression",
        ["body", "schedule"],
        f"Invalid cron expression: it has 1 field, not 5; {ACCEPTED}",
        "cron_invalid",
    )
    | invalid(
        "too_frequent",
        "Runs closer together than the server allows",
        ["body", "schedule"],
        "Schedule runs too often: runs can be 60 seconds apart, and this server's minimum is "
        "300 seconds",
        "schedule_too_frequent",
    )
    | invalid(
        "bad_timezone",
        "Not an IANA time zone",
        ["body", "timezone"],
        "Unknown time zone (use an IANA name such as Europe/Berlin)",
        "timezone_invalid",
    )
    | invalid(
        "private_url",
        "A URL the outbound policy refuses",
        ["body", "urls", 0],
        "URL points to a private, loopback or link-local address",
        "url_refused",
    )
    | invalid(
        "no_browser",
        "render browser on a server without a browser",
        ["body", "render"],
        NO_BROWSER_FOR_RENDER,
        "browser_not_configured",
    )
)
TASK_UPDATE_REQUEST = {
    "pause": example("Pause the task", {"state": "paused"}),
    "reschedule": example(
        "Look twice a day, in another time zone",
        {"schedule": "0 8,20 * * *", "timezone": "America/New_York"},
    ),
}

SUGGEST_PROMPT = "tell me when the next iPhone is announced"
SUGGEST_PAGE_PROMPT = (
    "let me know when the espresso machine at https://shop.example.com/espresso costs less "
    "than 50 dollars"
)
DRAFT: dict[str, Any] = {
    "name": "Next iPhone announcement",
    "search_query": "next iPhone announcement date",
    "condition_description": "Apple has announced the next iPhone, with its release date",
    "urls": [],
    "mode": "model",
    "rules": None,
    "change": None,
    "schedule": "0 9 * * *",
    "timezone": "UTC",
    "notify_behavior": "once",
}
SUGGESTION = {
    "task": DRAFT,
    "explanation": "Searches the news every morning and tells you once, when Apple has "
    "announced the next iPhone.",
}
PAGE_SUGGESTION = {
    "task": DRAFT
    | {
        "name": "Espresso machine under $50",
        "search_query": None,
        "condition_description": "The espresso machine costs less than $50",
        "urls": ["https://shop.example.com/espresso"],
        "mode": "rules",
        "rules": {"match": "all", "conditions": [{"kind": "number", "op": "<", "value": 50}]},
        "schedule": "0 */6 * * *",
        "notify_behavior": "track_state",
    },
    "explanation": "Reads the shop's page every six hours and tells you when the price is "
    "below $50, and again when it changes.",
}


# --- the table -----------------------------------------------------------------------------------

TASK_UPDATE = Documented(
    request=TASK_UPDATE_REQUEST,
    success=ok("The task, paused", PAUSED_TASK),
    errors={
        404: TASK_NOT_FOUND,
        409: detail(
            "bad_transition",
            "A state change that is not allowed",
            "A completed task cannot become paused",
        )
        | CONCURRENT,
        422: BAD_TASK_ID | TASK_INVALID,
        503: SCHEDULER_DOWN | COMMON[503],
    },
)
NO_ID = frozenset({404})

OPERATIONS: dict[tuple[str, str], Documented] = {
    # tasks
    ("POST", "/api/v1/tasks"): Documented(
        request={
            "webhook": example("Watch for a release date, tell a webhook", TASK_REQUEST),
            "minimal": example(
                "Only a query (condition, schedule and the rest take their defaults)",
                {"search_query": "When is the next iPhone released?"},
            ),
        },
        success=ok("The new task, scheduled", NEW_TASK),
        errors={
            409: CONCURRENT,
            422: TASK_INVALID,
            503: SCHEDULER_DOWN | COMMON[503],
        },
        not_answered=NO_ID,
    ),
    ("POST", "/api/v1/tasks/suggest"): Documented(
        request={
            "event": example("An event to hear of", {"prompt": SUGGEST_PROMPT}),
            "page": example("A page and a price", {"prompt": SUGGEST_PAGE_PROMPT}),
        },
        success=ok("A draft for an event (nothing is saved)", SUGGESTION)
        | {"page": example("A draft that watches a page", PAGE_SUGGESTION)},
        errors={
            422: invalid(
                "empty_prompt",
                "An empty prompt",
                ["body", "prompt"],
                "String should have at least 1 character",
                "string_too_short",
            ),
            502: detail(
                "no_valid_task",
                "The model's drafts were refused, even when it was told why",
                "Model openai:gpt-4o-mini drafted no valid task in 3 attempts; the last was "
                "refused: schedule: Schedule runs too often: runs can be 60 seconds apart, and "
                "this server's minimum is 300 seconds",
            )
            | detail(
                "model_failed",
                "The model's provider refused the request",
                "The provider of model openai:gpt-4o-mini refused the credentials: check "
                "OPENAI_API_KEY",
            ),
            503: detail("no_model", "The server has no model", NO_MODEL_MESSAGE) | COMMON[503],
        },
        not_answered=NO_ID,
    ),
    ("GET", "/api/v1/tasks"): Documented(
        success=ok("One page of your tasks", page(TASK)),
        errors={
            422: BAD_LIMIT
            | invalid(
                "bad_state",
                "An unknown state",
                ["query", "state"],
                "Input should be 'active', 'paused' or 'completed'",
                "enum",
            )
        },
        not_answered=NO_ID,
    ),
    ("GET", "/api/v1/tasks/{task_id}"): Documented(
        success=ok("A task with its last execution", TASK),
        errors={404: TASK_NOT_FOUND, 422: BAD_TASK_ID},
    ),
    ("PUT", "/api/v1/tasks/{task_id}"): TASK_UPDATE,
    ("PATCH", "/api/v1/tasks/{task_id}"): TASK_UPDATE,
    ("DELETE", "/api/v1/tasks/{task_id}"): Documented(
        success=None,  # 204: no body
        errors={
            404: TASK_NOT_FOUND,
            409: CONCURRENT,
            422: BAD_TASK_ID,
            503: SCHEDULER_DOWN | COMMON[503],
        },
    ),
    # executions
    ("POST", "/api/v1/tasks/preview"): Documented(
        request={
            "with_condition": example("A query, a condition and a page to read", PREVIEW_REQUEST),
            "query_only": example(
                "Only a query: the condition is inferred",
                {"search_query": "When is the next iPhone released?"},
            ),
            "rules_of_a_task": example(
                "Edited rules of an existing task, compared with its last run",
                {
                    "urls": [{"url": "https://shop.example.com/espresso", "selector": "#price"}],
                    "rules": RULES_EXAMPLE,
                    "task_id": TASK_ID,
                },
            ),
        },
        success=ok(
            "The verdict and its sources (nothing is stored)",
            {
                **{key: VERDICT[key] for key in ("answer", "condition_met", "reasoning")},
                "current_state": VERDICT["current_state"],
                "grounding_sources": SOURCES,
                "inferred_condition": None,
                "usage": USAGE,
                "compared_with": None,
                "diff": None,
                "conditions": [],
            },
        )
        | {
            "rules": example(
                "A rules preview of an existing task: which conditions held",
                {
                    "answer": f"The rules are met at {PRICE_LABEL}",
                    "condition_met": True,
                    "current_state": {PRICE_LABEL: {"number": 49.0}},
                    "reasoning": f"{PRICE_LABEL}: ✓ number < 50 (it is 49); "
                    "✓ number dropped by at least 10% (was 59, now 49)",
                    "grounding_sources": [
                        {"url": "https://shop.example.com/espresso", "title": ""}
                    ],
                    "inferred_condition": None,
                    "usage": {
                        **USAGE,
                        "llm_calls": 0,
                        "search_calls": 0,
                        "input_tokens": 0,
                        "output_tokens": 0,
                        "pages_fetched": 1,
                    },
                    "compared_with": EXECUTION_ID,
                    "diff": DIFF_EXAMPLE,
                    "conditions": [
                        {
                            "url": "https://shop.example.com/espresso",
                            "selector": "#price",
                            "condition": RULES_EXAMPLE["conditions"][0],
                            "held": True,
                            "detail": "number < 50 (it is 49)",
                        },
                        {
                            "url": "https://shop.example.com/espresso",
                            "selector": "#price",
                            "condition": RULES_EXAMPLE["conditions"][1],
                            "held": True,
                            "detail": "number dropped by at least 10% (was 59, now 49)",
                        },
                    ],
                },
            )
        },
        errors={
            422: invalid(
                "urls_required",
                'search_provider "none" without urls',
                ["body", "urls"],
                'With search_provider "none" nothing is searched: give the pages to read in urls',
                "urls_required",
            )
            | invalid(
                "search_query_missing",
                "No search_query",
                ["body", "search_query"],
                "Field required",
                "missing",
            )
            | invalid(
                "no_model",
                "A model task on a server without a model",
                ["body", "mode"],
                NO_MODEL_FOR_MODE,
                "model_not_configured",
            ),
            404: detail("no_task", "task_id names a task that is not yours", "Task not found"),
            502: detail("search_failed", "The search provider failed", SEARCH_DOWN),
            504: detail(
                "too_slow", "Past the run time limit", "The preview did not finish within 180 s"
            ),
        },
    ),
    ("POST", "/api/v1/tasks/{task_id}/execute"): Documented(
        success=ok("The run, started", STARTED_EXECUTION)
        | {"finished": example("With ?wait=true: the run, finished", EXECUTION)},
        errors={
            404: TASK_NOT_FOUND,
            422: BAD_TASK_ID,
            503: detail(
                "scheduler_unavailable",
                "The scheduler (Temporal) cannot take the run",
                "Temporal refused the run (namespace not found)",
            )
            | COMMON[503],
        },
        not_answered=frozenset({502}),
    ),
    ("GET", "/api/v1/tasks/{task_id}/executions"): Documented(
        success=ok("A task's runs, newest first", page(EXECUTION, FAILED_EXECUTION)),
        errors={404: TASK_NOT_FOUND, 422: BAD_TASK_ID | BAD_LIMIT},
        not_answered=frozenset({502}),
    ),
    ("GET", "/api/v1/tasks/{task_id}/executions/{execution_id}/sources"): Documented(
        success=ok(
            "The sources a run read",
            [
                {
                    "url": "https://shop.example.com/espresso",
                    "selector": "#price",
                    "title": "",
                    "content_hash": "9f2c" * 16,
                    "size": 8,
                    "screenshot": f"/api/v1/tasks/{TASK_ID}/executions/{EXECUTION_ID}/sources/0"
                    "/screenshot",
                }
            ],
        ),
        errors={
            404: TASK_NOT_FOUND
            | detail("no_execution", "An execution of another task", "Execution not found"),
            422: BAD_TASK_ID,
        },
    ),
    ("GET", "/api/v1/tasks/{task_id}/executions/{execution_id}/sources/{position}/screenshot"): (
        Documented(
            success=ok("The page as the browser showed it (PNG bytes)", "<PNG image>"),
            errors={
                404: TASK_NOT_FOUND
                | detail("no_execution", "An execution of another task", "Execution not found")
                | detail("no_screenshot", "A source without a screenshot", "Screenshot not found"),
                422: BAD_TASK_ID,
            },
        )
    ),
    ("GET", "/api/v1/tasks/{task_id}/diff"): Documented(
        success=ok(
            "What changed between the last two runs",
            {
                "task_id": TASK_ID,
                "from_execution_id": FAILED_EXECUTION_ID,
                "to_execution_id": EXECUTION_ID,
                "changed": True,
                "sources": [
                    {
                        "url": "https://shop.example.com/espresso",
                        "selector": "#price",
                        "before_hash": "9f2c" * 16,
                        "after_hash": "41ab" * 16,
                        "added": ["$49.00"],
                        "removed": ["$59.00"],
                        "unified": DIFF_EXAMPLE,
                    }
                ],
                "unified": DIFF_EXAMPLE,
            },
        ),
        errors={
            404: TASK_NOT_FOUND
            | detail("no_execution", "An execution of another task", "Execution not found"),
            422: BAD_TASK_ID
            | invalid(
                "not_enough_runs",
                "Fewer than two runs to compare",
                ["query", "from"],
                "The task has fewer than two runs with sources to compare",
                "not_enough_runs",
            )
            | invalid(
                "snapshots_pruned",
                "A run older than the retention period",
                ["query", "from"],
                f"The snapshots of execution {FAILED_EXECUTION_ID} were pruned: runs keep what "
                "they read for the server's retention period (TORALE_SNAPSHOT_RETENTION_DAYS), "
                "and runs from before snapshots were kept have none",
                "snapshots_pruned",
            ),
        },
    ),
    ("GET", "/api/v1/tasks/{task_id}/notifications"): Documented(
        success=ok("The runs that met the condition", page(EXECUTION)),
        errors={404: TASK_NOT_FOUND, 422: BAD_TASK_ID | BAD_LIMIT},
        not_answered=frozenset({502}),
    ),
    # webhooks
    ("GET", "/api/v1/webhooks/config"): Documented(
        success=ok("Your webhook settings", WEBHOOK_CONFIG),
    ),
    ("PUT", "/api/v1/webhooks/config"): Documented(
        request={
            "set_url": example(
                "Send every notification here too", {"url": HOOK_URL, "enabled": True}
            ),
            "disable": example("Stop sending to the account URL", {"enabled": False}),
        },
        success=ok("Your webhook settings", WEBHOOK_CONFIG),
        errors={
            422: invalid(
                "plain_http",
                "An http:// URL on a server that requires https",
                ["body", "url"],
                "URL must use https (plain http is not allowed on this server)",
                "url_refused",
            )
        },
    ),
    ("POST", "/api/v1/webhooks/config/rotate-secret"): Documented(
        success=ok(
            "A new secret",
            WEBHOOK_CONFIG | {"secret": "whsec_3pQx0bWv9Zr6Uj1Ke8Lf4Hn2Gm7Dc5Ya0Ts3Ro9Ei6Vw="},
        ),
    ),
    ("POST", "/api/v1/webhooks/test"): Documented(
        request={
            "url": example("Send to this URL", {"url": HOOK_URL}),
            "configured": example("Send to your configured URL", {}),
        },
        success=ok(
            "The receiver answered 200",
            {
                "delivered": True,
                "url": HOOK_URL,
                "webhook_id": "test_e782de227d5a403581a51debcf0ee9ca",
                "status_code": 200,
                "error": None,
                "duration_ms": 143,
            },
        )
        | {
            "refused": example(
                "The receiver answered an error",
                {
                    "delivered": False,
                    "url": HOOK_URL,
                    "webhook_id": "test_0b7e1f3c9d2a4e6f8a1b3c5d7e9f0a2b",
                    "status_code": 500,
                    "error": "the receiver answered HTTP 500",
                    "duration_ms": 98,
                },
            )
        },
        errors={
            422: invalid(
                "no_url",
                "No URL given and none configured",
                ["body", "url"],
                "Give a URL, or set one with PUT /api/v1/webhooks/config",
                "value_error",
            )
        },
    ),
    ("GET", "/api/v1/webhooks/deliveries"): Documented(
        success=ok(
            "Delivery attempts, newest first",
            page(
                {
                    "id": ATTEMPT_ID,
                    "delivery_id": DELIVERY_ID,
                    "task_id": TASK_ID,
                    "execution_id": EXECUTION_ID,
                    "channel_type": "webhook",
                    "target": HOOK_URL,
                    "attempted_at": "2026-09-10T07:00:39Z",
                    "success": True,
                    "status_code": 200,
                    "error": None,
                    "duration_ms": 187,
                    "delivery_status": "delivered",
                    "attempt": 1,
                }
            ),
        ),
        errors={
            422: invalid(
                "bad_task_id",
                "task_id is not a UUID",
                ["query", "task_id"],
                "Input should be a valid UUID, invalid length: found 3",
                "uuid_parsing",
            )
            | BAD_LIMIT
        },
    ),
    # feeds
    ("GET", "/api/v1/feeds/token"): Documented(
        success=ok("You have a feed token", FEED_TOKEN)
        | {"none": example("No feed token (feeds are off)", NO_FEED_TOKEN)},
    ),
    ("POST", "/api/v1/feeds/token"): Documented(
        success=ok("A new token and its feed URLs (shown only here)", FEED_TOKEN_CREATED),
    ),
    ("DELETE", "/api/v1/feeds/token"): Documented(
        success=ok("Feeds are off: every feed URL answers 404", NO_FEED_TOKEN),
    ),
    # health
    ("GET", "/health"): Documented(
        success=ok("All well", {"status": "ok", "database": "ok", "scheduler": "running"}),
        errors={
            503: {
                "degraded": example(
                    "The database does not answer",
                    {"status": "degraded", "database": "unavailable", "scheduler": "running"},
                )
            }
        },
    ),
    ("GET", "/metrics"): Documented(
        success=ok(
            "Prometheus text (excerpt)",
            "# HELP torale_tasks Tasks, by state.\n"
            "# TYPE torale_tasks gauge\n"
            'torale_tasks{state="active"} 251.0\n'
            'torale_tasks{state="paused"} 37.0\n'
            'torale_tasks{state="completed"} 30.0\n'
            "# HELP torale_database_up 1 when the database answered the last scrape.\n"
            "# TYPE torale_database_up gauge\n"
            "torale_database_up 1.0\n",
        ),
        errors={
            401: detail(
                "bad_token",
                "TORALE_METRICS_TOKEN is set and was not sent",
                "Metrics need `Authorization: Bearer <TORALE_METRICS_TOKEN>`",
            )
        },
    ),
    # auth
    ("POST", "/auth/sync-user"): Documented(
        success=ok(
            "The user, created from the token",
            {"user": USER | {"clerk_user_id": "user_2kX9fQpR7vLmN3aB"}, "created": True},
        ),
        errors={
            403: detail(
                "api_key",
                "Called with an API key",
                "This route takes a sign-in token, not an API key",
            )
            | COMMON[403],
            409: detail(
                "email_taken",
                "The token's email belongs to another account",
                "This email address already belongs to another account on this server",
            ),
        },
        not_answered=NO_ID,
    ),
    ("GET", "/auth/me"): Documented(
        success=ok("The caller", USER),
        not_answered=NO_ID,
    ),
    ("POST", "/auth/api-keys"): Documented(
        request={"laptop": example("A key for your laptop", {"name": "laptop"})},
        success=ok("The key, shown this once", {"key": API_KEY, "key_info": KEY_INFO}),
        errors={
            422: invalid(
                "empty_name",
                "An empty name",
                ["body", "name"],
                "String should have at least 1 character",
                "string_too_short",
            )
        },
        not_answered=NO_ID,
    ),
    ("GET", "/auth/api-keys"): Documented(
        success=ok(
            "Your keys (the key itself is never shown again)",
            page(
                KEY_INFO | {"last_used_at": "2026-09-10T12:05:13Z"},
                KEY_INFO
                | {
                    "id": "5b3c8e21-7f4a-4d9b-a6e0-2c1f9d8b7a63",
                    "name": "old server",
                    "key_prefix": "sk_Hq0vT3mZ",
                    "created_at": "2026-08-25T13:58:40Z",
                    "is_active": False,
                },
            ),
        ),
        errors={
            422: invalid(
                "bad_page",
                "page below 1",
                ["query", "page"],
                "Input should be greater than or equal to 1",
                "greater_than_equal",
            )
        },
        not_answered=NO_ID,
    ),
    ("DELETE", "/auth/api-keys/{key_id}"): Documented(
        success=ok("Revoked", {"status": "revoked"}),
        errors={
            404: detail("not_found", "An unknown key, or another user's", "API key not found"),
            422: invalid(
                "bad_id", "The id is not a UUID", ["path", "key_id"], UNKNOWN_ID, "uuid_parsing"
            ),
        },
    ),
}

ADMIN_LIST = {403: ADMIN_ONLY, 422: BAD_LIMIT}
USER_NOT_FOUND = detail("not_found", "An unknown user", "User not found")
BAD_USER_ID = invalid(
    "bad_id", "The id is not a UUID", ["path", "user_id"], UNKNOWN_ID, "uuid_parsing"
)
FAILED_ADMIN_EXECUTION = {
    "id": FAILED_EXECUTION["id"],
    "task_id": TASK_ID,
    "task_name": TASK["name"],
    "user_id": USER_ID,
    "user_email": USER["email"],
    **{key: FAILED_EXECUTION[key] for key in ("status", "trigger", "created_at", "started_at")},
    **{key: FAILED_EXECUTION[key] for key in ("completed_at", "condition_met", "error_message")},
    "notified": False,
    "usage": FAILED_EXECUTION["usage"],
}
DEACTIVATED = {
    "user": ADMIN_USER | {"is_active": False, "active_task_count": 0},
    "tasks_changed": 2,
}

OPERATIONS |= {
    ("GET", "/admin/temporal/schedules"): Documented(
        success=ok(
            "The schedules (here the embedded scheduler's)",
            page(
                {
                    "schedule_id": f"task:{TASK_ID}",
                    "task_id": TASK_ID,
                    "user_id": USER_ID,
                    "task_name": TASK["name"],
                    "cron": TASK["schedule"],
                    "timezone": TASK["timezone"],
                    "paused": False,
                    "next_run_times": [
                        "2026-09-11T07:00:00Z",
                        "2026-09-12T07:00:00Z",
                        "2026-09-13T07:00:00Z",
                    ],
                }
            ),
        ),
        errors=ADMIN_LIST,
        not_answered=NO_ID,
    ),
    ("GET", "/admin/temporal/workflows"): Documented(
        success=ok(
            "Recent runs, newest first",
            page(
                {
                    "run_id": f"execution:{EXECUTION_ID}",
                    "task_id": TASK_ID,
                    "execution_id": EXECUTION_ID,
                    "status": "success",
                    "started_at": EXECUTION["started_at"],
                    "closed_at": EXECUTION["completed_at"],
                }
            ),
        ),
        errors=ADMIN_LIST,
        not_answered=NO_ID,
    ),
    ("GET", "/admin/stats"): Documented(
        success=ok(
            "Users, tasks and the last day's runs",
            {
                "users": {"total": 42, "active": 40},
                "tasks": {
                    "total": 318,
                    "by_state": {"active": 251, "paused": 37, "completed": 30},
                    "condition_met": 64,
                },
                "executions_24h": {
                    "total": 5960,
                    "succeeded": 5911,
                    "failed": 49,
                    "success_rate": round(5911 / 5960, 4),
                },
                "popular_queries": [
                    {"search_query": TASK["search_query"], "tasks": 12},
                    {"search_query": "Nintendo Switch 2 price in Germany", "tasks": 7},
                ],
            },
        ),
        errors={403: ADMIN_ONLY},
        not_answered=NO_ID,
    ),
    ("GET", "/admin/queries"): Documented(
        success=ok(
            "Every user's tasks",
            page(
                {
                    **{key: TASK[key] for key in ("id", "user_id", "name", "search_query")},
                    **{key: TASK[key] for key in ("condition_description", "schedule")},
                    **{key: TASK[key] for key in ("timezone", "state", "paused_reason")},
                    **{key: TASK[key] for key in ("condition_met", "next_run", "created_at")},
                    "owner_email": USER["email"],
                    "run_count": 16,
                    "last_run_at": EXECUTION["created_at"],
                }
            ),
        ),
        errors=ADMIN_LIST,
        not_answered=NO_ID,
    ),
    ("GET", "/admin/executions"): Documented(
        success=ok("Every execution, newest first", page(FAILED_ADMIN_EXECUTION)),
        errors={
            403: ADMIN_ONLY,
            422: invalid(
                "bad_status",
                "An unknown status",
                ["query", "status"],
                "Input should be 'pending', 'running', 'success', 'failed', 'retrying' or "
                "'cancelled'",
                "enum",
            )
            | BAD_LIMIT,
        },
        not_answered=NO_ID,
    ),
    ("GET", "/admin/errors"): Documented(
        success=ok(
            "Failed runs and deliveries, newest first",
            page(
                {
                    "kind": "delivery",
                    "id": DELIVERY_ID,
                    "task_id": TASK_ID,
                    "task_name": TASK["name"],
                    "user_id": USER_ID,
                    "user_email": USER["email"],
                    "occurred_at": "2026-09-10T07:00:39Z",
                    "error": "the receiver answered HTTP 503",
                    "channel_type": "webhook",
                },
                {
                    "kind": "execution",
                    "id": FAILED_EXECUTION["id"],
                    "task_id": TASK_ID,
                    "task_name": TASK["name"],
                    "user_id": USER_ID,
                    "user_email": USER["email"],
                    "occurred_at": FAILED_EXECUTION["completed_at"],
                    "error": SEARCH_DOWN,
                    "channel_type": None,
                },
            ),
        ),
        errors=ADMIN_LIST,
        not_answered=NO_ID,
    ),
    ("GET", "/admin/users"): Documented(
        success=ok("Every user, with task counts", page(ADMIN_USER)),
        errors=ADMIN_LIST,
        not_answered=NO_ID,
    ),
    ("PATCH", "/admin/users/{user_id}/deactivate"): Documented(
        success=ok("Deactivated; two active tasks paused", DEACTIVATED),
        errors={
            403: ADMIN_ONLY,
            404: USER_NOT_FOUND,
            409: detail(
                "yourself",
                "An admin deactivating their own account",
                "You cannot deactivate your own account",
            )
            | CONCURRENT,
            422: BAD_USER_ID,
        },
    ),
    ("PATCH", "/admin/users/{user_id}/activate"): Documented(
        success=ok(
            "Active again; the two paused tasks resume",
            {"user": ADMIN_USER, "tasks_changed": 2},
        ),
        errors={403: ADMIN_ONLY, 404: USER_NOT_FOUND, 409: CONCURRENT, 422: BAD_USER_ID},
    ),
}


# --- into the document ---------------------------------------------------------------------------


def _set(content: dict[str, Any], examples: Examples) -> None:
    """Put examples on every media type of a request body or response."""
    for media in content.values():
        media["examples"] = copy.deepcopy(examples)


def examples_for(documented: Documented, status: int) -> Examples | None:
    return documented.errors.get(status) or COMMON.get(status)


def add_examples(document: dict[str, Any]) -> dict[str, Any]:
    """Add the table's examples to an OpenAPI document (in place); operations not in the table
    are left as they are (tests/test_openapi.py makes sure there are none)."""
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            documented = OPERATIONS.get((method.upper(), path))
            if documented is None or not isinstance(operation, dict):
                continue
            body = operation.get("requestBody", {}).get("content")
            if body and documented.request:
                _set(body, documented.request)
            for code, response in operation.get("responses", {}).items():
                content = response.get("content")
                if not content:
                    continue
                status = int(code)
                if 200 <= status < 300:
                    found = documented.success
                elif status in documented.not_answered:
                    found = None
                else:
                    found = examples_for(documented, status)
                if found:
                    _set(content, found)
    return document


def install(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json, /docs, /redoc) carry the examples, built once
    and cached as FastAPI caches the document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
            app.openapi_schema = add_examples(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
