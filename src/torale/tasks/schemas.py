"""Task request and response bodies (docs/api.md §4)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    StringConstraints,
    computed_field,
    field_validator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from torale.engine.search.base import SearchProviderName
from torale.executions.schemas import ExecutionRead
from torale.inputs import TEXT, Context, clean_json
from torale.notify.channels import NotificationChannel
from torale.statuses import TaskState
from torale.tasks.schedule import InvalidCronError, is_valid_timezone, normalize_cron

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


_SCHEDULE_DOC = (
    "Standard 5-field cron (`minute hour day month weekday`), read in `timezone`: numbers, `*`, "
    "ranges, lists, steps (`*/15`, `0-30/5`) and month/weekday names. The macros `@hourly`, "
    "`@daily`, `@weekly`, `@monthly` and `@yearly` are accepted and stored as 5 fields. "
    "Extensions (`L`, `W`, `#`, `?`, `R`, `H`, seconds, `@reboot`) are refused."
)


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(
        default=None,
        description="A label. Default: the search query (its first 80 characters), or the first "
        "URL's host and path.",
    )
    search_query: Query = Field(description="What to search for.")
    condition_description: Condition | None = Field(
        default=None, description="When to notify, in plain language. Default: the search query."
    )
    urls: list[PageURL] = Field(
        default_factory=list, max_length=20, description="Pages to read on every run."
    )
    schedule: Cron = Field(default="0 9 * * *", description=_SCHEDULE_DOC)
    timezone: Timezone = Field(default="UTC", description="IANA time zone name.")
    notify_behavior: NotifyBehavior = "once"
    notifications: list[NotificationChannel] = Field(default_factory=list, max_length=10)
    config: TaskConfig = Field(default_factory=TaskConfig)
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
    urls: list[PageURL] | None = Field(default=None, max_length=20)
    schedule: Cron | None = Field(default=None, description=_SCHEDULE_DOC)
    timezone: Timezone | None = None
    notify_behavior: NotifyBehavior | None = None
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
    urls: list[str]
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
