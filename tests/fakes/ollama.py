"""A local Ollama: its own API's model list (`GET /api/tags`, `GET /api/version`) and its
OpenAI-compatible endpoint (`/v1/chat/completions`, `/v1/models`), whose answers are scripted
as `FakeOpenAI`'s are.

`models` are the chat models it lists; `embedding` adds embedding-only models (family `bert` /
`nomic-bert`, as Ollama reports them), which cannot answer a chat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .openai import FakeOpenAI, Script

__all__ = ["FakeOllama"]


def _tag(name: str, family: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2026-11-30T10:00:00.000000000Z",
        "size": 4_920_753_328,
        "digest": "46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_K_M",
        },
    }


class FakeOllama(FakeOpenAI):
    def __init__(
        self,
        script: Script | None = None,
        *,
        models: Sequence[str] = ("llama3.1:8b",),
        embedding: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.tags = [_tag(m, "llama") for m in models] + [_tag(m, "nomic-bert") for m in embedding]
        super().__init__(script, models=[*models, *embedding], host=host, port=port)

    def build_app(self) -> Starlette:
        app = super().build_app()
        app.router.routes.append(Route("/api/tags", self._tags, methods=["GET"]))
        app.router.routes.append(Route("/api/version", self._version, methods=["GET"]))
        return app

    async def _tags(self, request: Request) -> Response:
        _, failure = await self._admit(request)
        if failure is not None:
            return self.error_response(failure)
        return JSONResponse({"models": self.tags})

    async def _version(self, request: Request) -> Response:
        await self._admit(request)
        return JSONResponse({"version": "0.13.0"})
