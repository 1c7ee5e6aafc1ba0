"""The bodies of POST /api/v1/tasks/preview (their own module: they need the task schemas,
which need the execution schemas)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from torale.executions.schemas import Source, Usage
from torale.tasks.schemas import (
    ChangeFilters,
    Condition,
    Query,
    Render,
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
    mode: TaskMode | None = Field(
        default=None,
        description="As for a task. A `change` preview only reads: there is no earlier run to "
        "compare with, so it is never met.",
    )
    rules: Rules | None = None
    change: ChangeFilters | None = None
    render: Render = Field(
        default="plain", description="As for a task: `browser` reads the urls with a browser."
    )


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
