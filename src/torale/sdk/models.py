"""What the API answers, as the SDK reads it.

These are the SDK's own models, not the server's schemas, so the SDK needs nothing but pydantic,
and they are tolerant of a newer server:

- a field this SDK does not know is kept: `task.model_extra["new_field"]` (or
  `task.new_field`), and it is in `model_dump()`;
- a field with a fixed set of values is typed `Literal[...] | str` (as openai-python does): the
  values known today are listed for type checkers and readers, and a value added later reads as
  its string instead of failing;
- a notification channel of a type this SDK does not know reads as an `UnknownChannel`, with
  its fields kept.

`tests/sdk/test_contract.py` checks them against the server's OpenAPI document, so they cannot
fall behind it unnoticed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, JsonValue, Tag

T = TypeVar("T")

TaskState = Literal["active", "paused", "completed"]
NotifyBehavior = Literal["once", "always", "track_state"]
SearchProvider = Literal["searxng", "duckduckgo", "tavily", "brave", "none"]
ExecutorType = Literal["llm_grounded_search"]
ExecutionStatus = Literal["pending", "running", "success", "failed", "retrying", "cancelled"]
Trigger = Literal["schedule", "manual"]
Role = Literal["user", "admin"]
ChannelType = Literal["webhook", "email", "apprise"]
DeliveryStatus = Literal["pending", "sending", "delivered", "failed"]
Render = Literal["plain", "browser"]
TaskMode = Literal["model", "change", "rules"]


class Model(BaseModel):
    """Keeps the fields it does not know (a newer server's), readable as attributes."""

    model_config = ConfigDict(extra="allow")


class Page(Model, Generic[T]):
    """One page of a list: `items`, and where it is in the whole (`total`, `page`, `limit`)."""

    items: list[T]
    total: int
    page: int
    limit: int


# --- executions ----------------------------------------------------------------------------


class ExecutionResult(Model):
    answer: str
    condition_met: bool
    current_state: dict[str, Any] | None
    reasoning: str
    confidence: float


class Source(Model):
    url: str
    title: str


class Usage(Model):
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    search_calls: int = 0
    pages_fetched: int = 0
    pages_not_modified: int = 0
    pages_failed: int = 0
    verdict_reused: bool = False


class Execution(Model):
    id: uuid.UUID
    task_id: uuid.UUID
    status: ExecutionStatus | str
    trigger: Trigger | str
    started_at: datetime
    completed_at: datetime | None
    created_at: datetime
    condition_met: bool | None
    change_summary: str | None
    result: ExecutionResult | None
    grounding_sources: list[Source]
    notification: str | None
    error_message: str | None
    usage: Usage


class PreviewResult(Model):
    """What POST /api/v1/tasks/preview answers: a verdict, nothing saved."""

    answer: str
    condition_met: bool
    current_state: dict[str, Any]
    reasoning: str
    grounding_sources: list[Source]
    inferred_condition: str | None
    usage: Usage
    # Previews of an existing task (`task_id`): the run compared with and the diff from it.
    compared_with: uuid.UUID | None = None
    diff: str | None = None
    conditions: list[ConditionResult] = Field(default_factory=list)  # rules: what held


class ConditionResult(Model):
    """A rule condition checked on one URL target, in a preview."""

    url: str
    selector: str | None
    condition: RuleCondition
    held: bool
    detail: str


# --- tasks ---------------------------------------------------------------------------------


class TaskConfig(Model):
    model: str | None = None
    search_provider: SearchProvider | str | None = None


class WebhookChannel(Model):
    type: Literal["webhook"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True


class EmailChannel(Model):
    type: Literal["email"]
    address: str


class AppriseChannel(Model):
    type: Literal["apprise"]
    url: str


class UnknownChannel(Model):
    """A channel of a type added to the server after this SDK: `type` and whatever it has."""

    type: str


def _channel_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("webhook", "email", "apprise") else "unknown"


NotificationChannel = Annotated[
    Annotated[WebhookChannel, Tag("webhook")]
    | Annotated[EmailChannel, Tag("email")]
    | Annotated[AppriseChannel, Tag("apprise")]
    | Annotated[UnknownChannel, Tag("unknown")],
    Discriminator(_channel_tag),
]


class UrlTarget(Model):
    url: str
    selector: str | None = None
    render: Render | str | None = None


class TextCondition(Model):
    kind: Literal["text"]
    op: Literal["contains", "not_contains", "matches"] | str
    value: str


class NumberCondition(Model):
    kind: Literal["number"]
    op: Literal["<", "<=", ">", ">=", "==", "!=", "drop_pct"] | str
    value: float


class UnknownCondition(Model):
    """A condition of a kind added to the server after this SDK."""

    kind: str


def _condition_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in ("text", "number") else "unknown"


RuleCondition = Annotated[
    Annotated[TextCondition, Tag("text")]
    | Annotated[NumberCondition, Tag("number")]
    | Annotated[UnknownCondition, Tag("unknown")],
    Discriminator(_condition_tag),
]


class Rules(Model):
    match: Literal["all", "any"] | str = "all"
    conditions: list[RuleCondition]


class ChangeFilters(Model):
    ignore_lines: list[str] = Field(default_factory=list)
    only: Literal["additions", "removals"] | str | None = None


class Task(Model):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    search_query: str
    condition_description: str
    urls: list[str]
    targets: list[UrlTarget] = Field(default_factory=list)
    mode: TaskMode | str = "model"
    rules: Rules | None = None
    change: ChangeFilters | None = None
    render: Render | str = "plain"
    screenshot: bool = False
    schedule: str
    timezone: str
    notify_behavior: NotifyBehavior | str
    notifications: list[NotificationChannel]
    config: TaskConfig
    executor_type: ExecutorType | str
    state: TaskState | str
    paused_reason: str | None = None
    condition_met: bool
    last_known_state: dict[str, Any] | None
    last_notified_at: datetime | None
    next_run: datetime | None
    last_execution_id: uuid.UUID | None
    last_execution: Execution | None = None
    context: JsonValue
    created_at: datetime
    updated_at: datetime
    state_changed_at: datetime
    is_active: bool


class TaskDraft(Model):
    """A task the server's model drafted (`client.tasks.suggest`); nothing is saved until it
    is created: `client.tasks.create(**suggestion.task.fields())`."""

    name: str | None = None
    search_query: str | None = None
    condition_description: str | None = None
    urls: list[str | UrlTarget] = Field(default_factory=list)
    mode: TaskMode | str | None = None
    rules: Rules | None = None
    change: ChangeFilters | None = None
    schedule: str = "0 9 * * *"
    timezone: str = "UTC"
    notify_behavior: NotifyBehavior | str = "once"

    def fields(self) -> dict[str, Any]:
        """The draft as the fields of a new task (what it leaves empty is left out)."""
        return {
            key: value
            for key, value in self.model_dump(mode="json").items()
            if value is not None and value != []
        }


class TaskSuggestion(Model):
    """What POST /api/v1/tasks/suggest answers: a draft task and why it is so."""

    task: TaskDraft
    explanation: str


# --- account -------------------------------------------------------------------------------


class User(Model):
    id: uuid.UUID
    email: str | None
    first_name: str | None
    role: Role | str
    is_active: bool
    created_at: datetime
    clerk_user_id: str | None = None


class ApiKey(Model):
    id: uuid.UUID
    name: str
    key_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    is_active: bool


class ApiKeyCreated(Model):
    key: str = Field(repr=False)  # the secret itself: kept out of reprs (and so out of logs)
    key_info: ApiKey


# --- webhooks ------------------------------------------------------------------------------


class WebhookConfig(Model):
    url: str | None
    secret: str = Field(repr=False)
    enabled: bool


class WebhookTestResult(Model):
    delivered: bool
    url: str
    webhook_id: str
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryAttempt(Model):
    id: uuid.UUID
    delivery_id: uuid.UUID
    task_id: uuid.UUID
    execution_id: uuid.UUID
    channel_type: ChannelType | str
    target: str
    attempted_at: datetime
    success: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    delivery_status: DeliveryStatus | str
    attempt: int


# --- feeds ---------------------------------------------------------------------------------


class FeedToken(Model):
    active: bool
    created_at: datetime | None


class FeedTokenCreated(Model):
    token: str = Field(repr=False)  # the secret itself: kept out of reprs (and so out of logs)
    created_at: datetime
    notifications_url: str = Field(repr=False)  # carries the token
    task_url_template: str = Field(repr=False)

    def task_url(self, task_id: uuid.UUID | str) -> str:
        """The Atom feed of one task's notifications."""
        return self.task_url_template.replace("{task_id}", str(uuid.UUID(str(task_id))))


# --- sources and diffs ---------------------------------------------------------------------


class SourceSnapshot(Model):
    url: str
    selector: str | None
    title: str
    content_hash: str
    size: int
    screenshot: str | None = None  # path of the page's PNG, for tasks with `screenshot`


class SourceDiff(Model):
    url: str
    selector: str | None
    before_hash: str | None
    after_hash: str | None
    added: list[str]
    removed: list[str]
    unified: str


class Diff(Model):
    task_id: uuid.UUID
    from_execution_id: uuid.UUID
    to_execution_id: uuid.UUID
    changed: bool
    sources: list[SourceDiff]
    unified: str
