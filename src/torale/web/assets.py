"""The package's static files, served under names that carry their content hash
(`/static/app.3f2a9c1b.css`) with a year-long immutable cache: a new release changes the name,
so browsers never keep a stale file and never ask twice for a current one."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from torale.errors import NotFoundError

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/static/"
CACHE_FOREVER = "public, max-age=31536000, immutable"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class Assets:
    urls: dict[str, str]  # logical name (`vendor/htmx.min.js`) → hashed URL
    files: dict[str, Asset]  # hashed name (`vendor/htmx.min.3f2a9c1b.js`) → content

    def url(self, name: str) -> str:
        return self.urls[name]


def _hashed(name: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:12]
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{digest}.{suffix}" if dot else f"{name}.{digest}"


@cache
def load() -> Assets:
    urls: dict[str, str] = {}
    files: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if not path.is_file() or path.suffix == ".md":
            continue
        name = path.relative_to(STATIC_DIR).as_posix()
        body = path.read_bytes()
        hashed = _hashed(name, body)
        media = (
            _TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        )
        urls[name] = PREFIX + hashed
        files[hashed] = Asset(body, media)
    return Assets(urls, files)


router = APIRouter(include_in_schema=False)


@router.get("/static/{name:path}")
async def static_file(name: str) -> Response:
    asset = load().files.get(name)
    if asset is None:
        raise NotFoundError("No such file")
    return Response(
        asset.body,
        media_type=asset.media_type,
        headers={"Cache-Control": CACHE_FOREVER, "X-Content-Type-Options": "nosniff"},
    )
