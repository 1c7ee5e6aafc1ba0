"""GET /health: is the database reachable (and, later, the scheduler running)."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from torale.state import app_state

logger = logging.getLogger("torale.health")
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    scheduler: str


@router.get(
    "/health",
    response_model=Health,
    summary="Service health",
    description="200 when the database answers, 503 (same body) when it does not. No auth.",
    responses={503: {"model": Health, "description": "Degraded"}},
)
async def health(request: Request) -> JSONResponse:
    state = app_state(request)
    database: Literal["ok", "unavailable"] = "ok"
    try:
        async with asyncio.timeout(5), state.database.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        logger.warning("health check: database unavailable", exc_info=True)
        database = "unavailable"
    body = Health(
        status="ok" if database == "ok" else "degraded",
        database=database,
        scheduler=state.scheduler.status,
    )
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)
