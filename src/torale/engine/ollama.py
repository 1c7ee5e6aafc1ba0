"""A local Ollama, used when no model is configured.

At start (`torale serve`, `torale worker`), a server with neither `TORALE_MODEL` nor
`TORALE_OPENAI_BASE_URL` asks `TORALE_OLLAMA_URL` (Ollama's default address) for its models
(`GET /api/tags`). If one answers with a chat model, Torale uses the first through Ollama's
OpenAI-compatible endpoint (`/v1`), as if the operator had set both settings, and says so.
Nothing listening costs a refused connection; something that does not answer,
PROBE_TIMEOUT_SECONDS to connect and as long again for each read.
`TORALE_OLLAMA_AUTODETECT=false` turns it off. The address is the operator's own
configuration, like a model endpoint, so the outbound policy (which guards the pages tasks
name) does not apply to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from torale.config import Settings
from torale.engine.evaluate import uses_openai_base_url

logger = logging.getLogger("torale.engine")
PROBE_TIMEOUT_SECONDS = 0.5
# Embedding-only models cannot answer a chat request.
_EMBEDDING_FAMILIES = frozenset({"bert", "nomic-bert"})


@dataclass(frozen=True, slots=True)
class LocalModel:
    name: str  # as TORALE_MODEL will hold it
    base_url: str  # the OpenAI-compatible endpoint
    available: int  # how many chat models the server has


def _chat_models(answer: Any) -> list[str]:
    models = answer.get("models") if isinstance(answer, dict) else None
    names = []
    for item in models if isinstance(models, list) else []:
        if not isinstance(item, dict):
            continue
        name = item.get("model") or item.get("name")
        details = item.get("details")
        family = details.get("family") if isinstance(details, dict) else None
        if not isinstance(name, str) or not name:
            continue
        if "embed" in name.lower() or family in _EMBEDDING_FAMILIES:
            continue
        names.append(name)
    return names


def find_local_model(settings: Settings) -> LocalModel | None:
    """The model a local Ollama offers, when the settings leave the model to find; else None."""
    if settings.model or settings.openai_base_url or not settings.ollama_autodetect:
        return None
    root = settings.ollama_url.rstrip("/")
    try:
        response = httpx.get(f"{root}/api/tags", timeout=PROBE_TIMEOUT_SECONDS)
        response.raise_for_status()
        names = _chat_models(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        logger.debug("no local Ollama at %s (%s)", root, type(exc).__name__)
        return None
    if not names:
        return None
    return LocalModel(names[0], f"{root}/v1", len(names))


def use_local_model(settings: Settings) -> str | None:
    """Point the settings at a local Ollama's model if there is one to find; what to tell the
    operator (None: nothing found, or nothing to look for)."""
    found = find_local_model(settings)
    if found is None:
        return None
    settings.openai_base_url = found.base_url
    # A name whose first part is a provider pydantic-ai knows ("mistral:7b") would go to that
    # provider: the openai: prefix keeps it on this server.
    name = found.name
    settings.model = name if uses_openai_base_url(settings, name) else f"openai:{name}"
    others = found.available - 1
    return (
        f"No model is configured: using {found.name} from the local Ollama at "
        f"{settings.ollama_url.rstrip('/')}"
        + (f" (it has {others} other model{'s' if others != 1 else ''})" if others else "")
        + ". Set TORALE_MODEL to choose another model, or TORALE_OLLAMA_AUTODETECT=false to "
        "turn this off."
    )
