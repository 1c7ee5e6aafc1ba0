"""Routes that show what runs read: an execution's sources, and diffs between runs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from torale.auth.deps import CurrentUser
from torale.executions import actions
from torale.runtime import Runtime
from torale.watch.schemas import DiffRead, SourceRead

router = APIRouter(prefix="/api/v1/tasks", tags=["executions"])


@router.get(
    "/{task_id}/executions/{execution_id}/sources",
    summary="The sources a run read",
    description="Each page (and selector) the run read, with the SHA-256 of the text it read: "
    "equal hashes in two runs mean the same text. Empty for a run that failed or ran before "
    "snapshots were kept, or whose snapshots were pruned.",
)
async def list_sources(
    request: Request, task_id: uuid.UUID, execution_id: uuid.UUID, user: CurrentUser
) -> list[SourceRead]:
    return await actions.list_sources(
        Runtime.of_request(request), user_id=user.id, task_id=task_id, execution_id=execution_id
    )


@router.get(
    "/{task_id}/executions/{execution_id}/sources/{position}/screenshot",
    summary="A screenshot of a page a run read",
    description="The PNG of the page at `position` in the run's sources as the browser showed "
    "it, kept for tasks with `screenshot` (pages read with `render: browser`). 404 for a "
    "source without one.",
    response_class=Response,
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def screenshot(
    request: Request,
    task_id: uuid.UUID,
    execution_id: uuid.UUID,
    position: Annotated[int, Path(ge=0, le=1000, description="The source's place, from 0.")],
    user: CurrentUser,
) -> Response:
    image = await actions.screenshot(
        Runtime.of_request(request),
        user_id=user.id,
        task_id=task_id,
        execution_id=execution_id,
        position=position,
    )
    # Private: it shows what the user watches. Immutable: a run's screenshot never changes.
    headers = {"Cache-Control": "private, max-age=86400, immutable"}
    return Response(image, media_type="image/png", headers=headers)


@router.get(
    "/{task_id}/diff",
    summary="What changed between two runs",
    description="The line diff of every source between two executions of the task (unified "
    "text, and the added and removed lines). Default: the task's last two runs that kept "
    "sources; with only `from`, from it to the latest. 422 when there are not two runs to "
    "compare, or at `from`/`to` when that run kept no sources (it failed, or its snapshots were "
    "pruned after the retention period).",
)
async def diff(
    request: Request,
    task_id: uuid.UUID,
    user: CurrentUser,
    from_: Annotated[
        uuid.UUID | None, Query(alias="from", description="The earlier execution.")
    ] = None,
    to: Annotated[uuid.UUID | None, Query(description="The later execution.")] = None,
) -> DiffRead:
    return await actions.diff(
        Runtime.of_request(request), user_id=user.id, task_id=task_id, from_id=from_, to_id=to
    )
