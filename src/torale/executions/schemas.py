"""Execution responses (docs/api.md §5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from torale.statuses import ExecutionStatus, Trigger


class ExecutionResult(BaseModel):
    answer: str
    condition_met: bool
    current_state: dict[str, Any] | None
    reasoning: str
    confidence: float


class Source(BaseModel):
    url: str
    title: str


class Usage(BaseModel):
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    search_calls: int = 0
    pages_fetched: int = Field(default=0, description="Pages read (including 304 answers).")
    pages_not_modified: int = Field(
        default=0, description="Pages the server answered 304 Not Modified (text reused)."
    )
    pages_failed: int = 0
    verdict_reused: bool = Field(
        default=False,
        description="The run read exactly what the previous run read, so its verdict was reused "
        "without a model call.",
    )


class ExecutionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID
    status: ExecutionStatus
    trigger: Trigger
    started_at: datetime = Field(
        description="Set when the execution is created, moved to the real start when it runs."
    )
    completed_at: datetime | None
    created_at: datetime
    condition_met: bool | None
    change_summary: str | None
    result: ExecutionResult | None
    grounding_sources: list[Source]
    notification: str | None = Field(description="The message sent, or null if none was.")
    error_message: str | None
    usage: Usage
