"""Templates: Jinja2 with autoescaping, the asset URLs and the page context every page gets.

One environment for the process: templates are compiled once, on first use, and kept (no check
of the files' times on every render: they ship with the package)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from torale import __version__
from torale.notify.channels import mask_apprise_url
from torale.web import assets, csrf, formatting

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        auto_reload=False,
    )
)
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
    hosts=formatting.hosts,
    schedule=formatting.describe_schedule,
    masked_apprise=mask_apprise_url,  # an Apprise URL carries its service's credentials
)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _page_context(request: Request, csrf_token: str) -> dict[str, Any]:
    return {
        "request": request,
        "viewer": getattr(request.state, "viewer", None),
        "csrf_token": csrf_token,
        "path": request.url.path,
    }


def render_html(request: Request, name: str, context: dict[str, Any], csrf_token: str) -> str:
    """The page as text, with `csrf_token` where the session's token goes (web.page_cache
    renders a placeholder there)."""
    page = _page_context(request, csrf_token)
    page.update(context)
    return templates.get_template(name).render(page)


def html_response(body: bytes, *, status_code: int = 200) -> HTMLResponse:
    """An HTML answer as `render` gives it: never kept by the browser or a proxy."""
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    viewer = getattr(request.state, "viewer", None)
    token = viewer.csrf_token if viewer else csrf.expected_token(request) or ""
    page = _page_context(request, token)
    page.update(context or {})
    response = templates.TemplateResponse(
        request, name, page, status_code=status_code, headers=headers
    )
    response.headers.setdefault("Cache-Control", "no-store")
    return response
