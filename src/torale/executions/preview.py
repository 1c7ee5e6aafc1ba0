"""The bodies of POST /api/v1/tasks/preview (their own module: they need the task schemas,
which need the execution schemas). A preview of an existing task (`task_id`) compares with its
latest run, as the task's next run would; nothing is saved."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from torale.executions.schemas import Source, Usage
from torale.tasks.schemas import (
    ChangeFilters,
    Condition,
    Query,
    Render,
    RuleCondition,
    Rules,
    TaskConfig,
    TaskMode,
    UrlEntry,
)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search_query: Query | None = Field(default=None, description="Required in mode `model`.")
    condition_description: Condition | None = Field(
        default=None, description="Leave out to let the model infer it (see inferred_condition)."
    )
    # Tagged as a task's are: a wrong entry is one error at the entry (and its field).
    urls: list[UrlEntry] = Field(default_factory=list, max_length=20)
    config: TaskConfig = Field(default_factory=TaskConfig)
    mode: TaskMode | None = Field(default=None, description="As for a task.")
    rules: Rules | None = None
    change: ChangeFilters | None = None
    render: Render = Field(
        default="plain", description="As for a task: `browser` reads the urls with a browser."
    )
    task_id: uuid.UUID | None = Field(
        default=None,
        description="One of your tasks (when previewing changes to it): the preview compares "
        "with what its latest run read and found, as its next run would — `change` with the "
        "stored snapshot of its targets, `rules` (`drop_pct`) with its last numbers, `model` "
        "with its last check. Without it (a new task) a `change` preview has nothing to "
        "compare with and says so. Nothing is saved either way.",
    )


class ConditionResult(BaseModel):
    """One rule condition checked on one URL target."""

    url: str
    selector: str | None
    condition: RuleCondition
    held: bool
    detail: str = Field(description='What was read, e.g. "number < 50 (it is 49.99)".')


class PreviewResponse(BaseModel):
    answer: str
    condition_met: bool
    current_state: dict[str, object]
    reasoning: str
    grounding_sources: list[Source]
    inferred_condition: str | None = Field(
        description="The condition the model judged, when none was given."
    )
    usage: Usage
    compared_with: uuid.UUID | None = Field(
        default=None,
        description="With `task_id`: the task's run whose snapshots the preview compared with "
        "(its latest run that kept sources); null when there was nothing to compare with.",
    )
    diff: str | None = Field(
        default=None,
        description="The unified diff (trimmed) of the watched text against that run; null "
        "when nothing changed or there was nothing to compare with.",
    )
    conditions: list[ConditionResult] = Field(
        default_factory=list,
        description="Mode `rules`: each condition on each URL target, and whether it held.",
    )
