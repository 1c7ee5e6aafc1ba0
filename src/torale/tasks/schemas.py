"""Task request and response bodies (docs/api.md §4)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    StringConstraints,
    Tag,
    computed_field,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from torale.engine.search.base import SearchProviderName
from torale.executions.schemas import ExecutionRead
from torale.inputs import TEXT, Context, clean_json
from torale.notify.channels import NotificationChannel
from torale.statuses import TaskState
from torale.tasks.schedule import InvalidCronError, is_valid_timezone, normalize_cron
from torale.watch.patterns import pattern_problem
from torale.watch.selectors import selector_problem

NotifyBehavior = Literal["once", "always", "track_state"]

# Every string below carries TEXT, the shared text rules (torale/inputs.py).
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), TEXT]
Query = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), TEXT
]
Condition = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), TEXT]
PageURL = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048), TEXT
]


def _cron(value: str) -> str:
    try:
        return normalize_cron(value)
    except InvalidCronError as exc:
        raise PydanticCustomError("cron_invalid", str(exc)) from None


def _timezone(value: str) -> str:
    if not is_valid_timezone(value):
        raise PydanticCustomError(
            "timezone_invalid", "Unknown time zone (use an IANA name such as Europe/Berlin)"
        )
    return value


Cron = Annotated[str, StringConstraints(max_length=120), AfterValidator(_cron), TEXT]
Timezone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone), TEXT]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200), TEXT]


def _selector(value: str) -> str:
    if problem := selector_problem(value):
        raise PydanticCustomError("selector_invalid", problem)
    return value


def _pattern(value: str) -> str:
    if problem := pattern_problem(value):
        raise PydanticCustomError("pattern_invalid", problem)
    return value


Selector = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    AfterValidator(_selector),
    TEXT,
]
Pattern = Annotated[
    str, StringConstraints(min_length=1, max_length=500), AfterValidator(_pattern), TEXT
]
TaskMode = Literal["model", "change", "rules"]
# How pages are read: `plain` (one HTTP request) or `browser` (JavaScript runs: torale/browser).
Render = Literal["plain", "browser"]


class UrlTarget(BaseModel):
    """A page, and optionally the part of it that is watched."""

    model_config = ConfigDict(extra="forbid")

    url: PageURL
    selector: Selector | None = Field(
        default=None,
        description="The part of the page to read: CSS (`#price`), XPath (`xpath://h1`) or, "
        "for a JSON document, a JSON path (`json:$.items[0].price`). Only that part is read, "
        "compared and shown to the model; matching nothing fails the run. Default: the page's "
        "readable text.",
    )
    render: Render | None = Field(
        default=None,
        description="`browser` reads the page as a browser shows it, after its JavaScript ran "
        "(the server needs a browser: TORALE_BROWSER_PATH or TORALE_BROWSER_URL); `plain` "
        "reads the HTML as served. Default: the task's `render`.",
    )


def _url_entry_kind(value: object) -> str | None:
    if isinstance(value, str):
        return "url"
    if isinstance(value, dict | UrlTarget):
        return "target"
    return None  # neither: one error at the entry itself


# A plain URL or a {"url", "selector", "render"} object. Tagged so that an error names the entry
# (and "url" or "target"), not the validators pydantic tried.
UrlEntry = Annotated[
    Annotated[PageURL, Tag("url")] | Annotated[UrlTarget, Tag("target")],
    Discriminator(
        _url_entry_kind,
        custom_error_type="url_entry",
        custom_error_message='Each URL is a string or an object {"url", "selector", "render"}',
    ),
]


class TextCondition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["text"]
    op: Literal["contains", "not_contains", "matches"] = Field(
        description="`contains` / `not_contains`: the text holds the value (case-insensitive); "
        "`matches`: the value is a regular expression found in the text."
    )
    value: Annotated[str, StringConstraints(min_length=1, max_length=500), TEXT]

    @model_validator(mode="after")
    def _pattern_compiles(self) -> TextCondition:
        if self.op == "matches":
            _pattern(self.value)
        return self


class NumberCondition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["number"]
    op: Literal["<", "<=", ">", ">=", "==", "!=", "drop_pct"] = Field(
        description="Compares the first price or number in the watched text with the value; "
        "`drop_pct`: it fell by at least `value` percent since the previous run."
    )
    value: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _percentage(self) -> NumberCondition:
        if self.op == "drop_pct" and not 0 < self.value <= 100:
            raise PydanticCustomError(
                "drop_pct_range", "drop_pct takes a percentage above 0, at most 100"
            )
        return self


RuleCondition = Annotated[TextCondition | NumberCondition, Field(discriminator="kind")]


class Rules(BaseModel):
    """Conditions checked on each URL target's watched text; met when a target satisfies
    all (or any) of them."""

    model_config = ConfigDict(extra="forbid")

    match: Literal["all", "any"] = "all"
    conditions: list[RuleCondition] = Field(min_length=1, max_length=20)


class ChangeFilters(BaseModel):
    """What counts as a change in `change` mode."""

    model_config = ConfigDict(extra="forbid")

    ignore_lines: list[Pattern] = Field(
        default_factory=list,
        max_length=20,
        description="Regular expressions: lines where one is found do not count.",
    )
    only: Literal["additions", "removals"] | None = Field(
        default=None, description="Count only added lines, or only removed ones. Default: both."
    )


class TaskConfig(BaseModel):
    """Executor settings for one task. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName | None = Field(
        default=None,
        description="Model for this task, one the server allows (`TORALE_ALLOWED_MODELS`; "
        "by default only its own); default: the server's `TORALE_MODEL`.",
    )
    search_provider: SearchProviderName | None = Field(
        default=None,
        description="Search provider for this task; default: the server's. `none` reads only "
        "the task's urls (then at least one is required).",
    )

    @model_serializer(mode="wrap")
    def _only_set_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A task's config reads back as it was given: unset keys are absent, not null.
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


_URLS_DOC = (
    'Pages to read on every run (at most 20): a URL, or `{"url", "selector", "render"}` to read '
    "only a part of the page, or to read it with a browser."
)
_RENDER_DOC = (
    "How the task's urls are read: `plain` (the HTML as served) or `browser` (after the page's "
    "JavaScript ran; a 422 names the setting when the server has no browser). A target's own "
    "`render` wins. Search results are always read plainly."
)
_SCREENSHOT_DOC = (
    "Keep a PNG screenshot of every page read with the browser, with the run's sources "
    "(`GET …/executions/{id}/sources` links them)."
)
_MODE_DOC = (
    "How a run decides: `model` (a model judges the condition), `change` (the watched text "
    "differs from the previous run's; the first run records a baseline) or `rules` (the "
    "conditions in `rules`). Default: `rules` when rules are given, else `model` when a search "
    "query is given (refused when the server has no model), else `change`."
)
_SCHEDULE_DOC = (
    "Standard 5-field cron (`minute hour day month weekday`), read in `timezone`: numbers, `*`, "
    "ranges, lists, steps (`*/15`, `0-30/5`) and month/weekday names. The macros `@hourly`, "
    "`@daily`, `@weekly`, `@monthly` and `@yearly` are accepted and stored as 5 fields. "
    "Extensions (`L`, `W`, `#`, `?`, `R`, `H`, seconds, `@reboot`) are refused."
)

_NOTIFY_DOC = (
    "`once`: notify the first time the condition is met, then the task is completed; `always`: "
    "on every run where it is met; `track_state`: when it becomes met, and afterwards when what "
    "the run found (`current_state`) changes."
)


class TaskDraft(BaseModel):
    """What a task is about: the fields a suggestion fills in (`POST /api/v1/tasks/suggest`),
    and the first fields of `TaskCreate`. A draft is a valid create body as it is."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(
        default=None,
        description="A label. Default: the search query (its first 80 characters), or the first "
        "URL's host and path.",
    )
    search_query: Query | None = Field(
        default=None, description="What to search for (required in mode `model`)."
    )
    condition_description: Condition | None = Field(
        default=None, description="When to notify, in plain language. Default: the search query."
    )
    urls: list[UrlEntry] = Field(default_factory=list, max_length=20, description=_URLS_DOC)
    mode: TaskMode | None = Field(default=None, description=_MODE_DOC)
    rules: Rules | None = Field(default=None, description="The conditions of mode `rules`.")
    change: ChangeFilters | None = Field(
        default=None, description="Filters of mode `change` (default: every line counts)."
    )
    schedule: Cron = Field(default="0 9 * * *", description=_SCHEDULE_DOC)
    timezone: Timezone = Field(default="UTC", description="IANA time zone name.")
    notify_behavior: NotifyBehavior = Field(default="once", description=_NOTIFY_DOC)


class TaskCreate(TaskDraft):
    """A new task: what it is about (the fields of `TaskDraft`), whom it tells and how it
    starts."""

    notifications: list[NotificationChannel] = Field(default_factory=list, max_length=10)
    config: TaskConfig = Field(default_factory=TaskConfig)
    render: Render = Field(default="plain", description=_RENDER_DOC)
    screenshot: bool = Field(default=False, description=_SCREENSHOT_DOC)
    executor_type: Literal["llm_grounded_search"] = "llm_grounded_search"
    # Strings, not enum members: a Literal of members names them in its error message.
    state: Literal["active", "paused"] | None = Field(
        default=None, description="Initial state (default active)."
    )
    is_active: bool | None = Field(default=None, description="Same as `state`, as a boolean.")
    context: Context = Field(
        default=None,
        description="Free JSON, passed back verbatim in webhook payloads; at most 16 KB "
        "(16,384 bytes as compact UTF-8 JSON), without NaN or Infinity.",
    )
    run_immediately: bool = Field(
        default=False, description="Make the first run due now instead of at the first cron time."
    )


class TaskUpdate(BaseModel):
    """Partial update: only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    search_query: Query | None = None
    condition_description: Condition | None = Field(
        default=None, description="Send null or an empty string to follow the search query."
    )
    urls: list[UrlEntry] | None = Field(default=None, max_length=20, description=_URLS_DOC)
    mode: TaskMode | None = Field(default=None, description=_MODE_DOC)
    rules: Rules | None = Field(default=None, description="null removes them.")
    change: ChangeFilters | None = Field(default=None, description="null removes them.")
    render: Render | None = Field(default=None, description=_RENDER_DOC)
    screenshot: bool | None = Field(default=None, description=_SCREENSHOT_DOC)
    schedule: Cron | None = Field(default=None, description=_SCHEDULE_DOC)
    timezone: Timezone | None = None
    notify_behavior: NotifyBehavior | None = Field(default=None, description=_NOTIFY_DOC)
    notifications: list[NotificationChannel] | None = Field(default=None, max_length=10)
    config: TaskConfig | None = None
    state: TaskState | None = Field(
        default=None,
        description="active ↔ paused, active → completed, completed → active; others are 409.",
    )
    is_active: bool | None = Field(
        default=None, description="true resumes (from paused or completed); false pauses."
    )
    context: Context = Field(default=None, description="Free JSON; null removes it.")


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    search_query: str
    condition_description: str
    urls: list[str] = Field(description="The URL of each target in `targets`, in order.")
    targets: list[UrlTarget] = Field(
        description="The pages read, with their selectors and how each is read."
    )
    mode: TaskMode
    rules: Rules | None
    change: ChangeFilters | None
    render: Render = Field(description=_RENDER_DOC)
    screenshot: bool = Field(description=_SCREENSHOT_DOC)
    schedule: str
    timezone: str
    notify_behavior: NotifyBehavior
    notifications: list[NotificationChannel]
    config: TaskConfig
    executor_type: Literal["llm_grounded_search"]
    state: TaskState
    paused_reason: str | None = Field(
        default=None,
        description="Why the task is paused when you did not pause it: `account_deactivated`.",
    )
    condition_met: bool
    last_known_state: dict[str, Any] | None
    last_notified_at: datetime | None
    next_run: datetime | None = Field(description="When the next scheduled run is due (UTC).")
    last_execution_id: uuid.UUID | None
    last_execution: ExecutionRead | None = Field(
        default=None, description="The most recent execution; null until the task has run."
    )
    context: JsonValue
    created_at: datetime
    updated_at: datetime
    state_changed_at: datetime

    @field_validator("urls", mode="before")
    @classmethod
    def _plain_urls(cls, value: Any) -> Any:
        # Clients that know only strings (the 0.0.2 SDK) keep reading `urls`.
        if isinstance(value, list):
            return [item["url"] if isinstance(item, dict) else item for item in value]
        return value

    @field_validator("notifications", "config", mode="before")
    @classmethod
    def _readable(cls, value: Any) -> Any:
        # These share the input schemas and their text rules; a row saved before the rules
        # existed (SQLite stored NULs) must still read back, not fail its owner's list.
        return clean_json(value)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_active(self) -> bool:
        return self.state == TaskState.ACTIVE


Prompt = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), TEXT
]


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Prompt = Field(
        description='What to watch, in your own words: an event to hear of ("tell me when the '
        'next iPhone is announced"), or a page and what to look for on it.'
    )


class TaskSuggestion(BaseModel):
    task: TaskDraft = Field(
        description="The draft, validated like a new task: a body for POST /api/v1/tasks as "
        "it is (add `notifications` and the rest as you like). Nothing is saved."
    )
    explanation: str = Field(description="Why the model drafted it so, in a sentence or two.")
