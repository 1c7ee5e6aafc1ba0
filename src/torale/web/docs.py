"""`/docs` (Swagger UI) and `/redoc` from the package's own copies of their scripts, so the API
reference works offline (FastAPI's default pages load them from a CDN)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from torale.web.rendering import templates

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "docs/swagger.html", {})


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "docs/redoc.html", {})
