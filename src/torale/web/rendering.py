"""Templates: Jinja2 with autoescaping, the asset URLs and the page context every page gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from torale import __version__
from torale.notify.channels import mask_apprise_url
from torale.web import assets, csrf, formatting

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.globals.update(
    asset=lambda name: assets.load().url(name),
    version=__version__,
    csrf_field=csrf.FIELD,
    when=formatting.when,
    verdict_of=formatting.verdict_of,
    status_label=formatting.status_label,
    dot=formatting.dot,
    watched_texts=formatting.watched_texts,
    rule_checks=formatting.rule_checks,
    diff_lines=formatting.diff_lines,
    mode_names=formatting.MODE_NAMES,
    rules_in_words=formatting.describe_rules,
    change_in_words=formatting.describe_change,
)
templates.env.filters.update(
    relative=formatting.relative,
    iso=formatting.iso,
    utc=formatting.utc_text,
    host=formatting.host,
    schedule=formatting.describe_schedule,
    masked_apprise=mask_apprise_url,  # an Apprise URL carries its service's credentials
)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    viewer = getattr(request.state, "viewer", None)
    page: dict[str, Any] = {
        "viewer": viewer,
        "csrf_token": viewer.csrf_token if viewer else csrf.expected_token(request) or "",
        "path": request.url.path,
    }
    page.update(context or {})
    response = templates.TemplateResponse(
        request, name, page, status_code=status_code, headers=headers
    )
    response.headers.setdefault("Cache-Control", "no-store")
    return response
