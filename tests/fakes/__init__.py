"""Local servers that speak the real protocols of the internet services Torale talks to.

Each fake runs uvicorn in a background thread on 127.0.0.1 (or a given host) and a free port;
use it as a context manager or call `start()`/`stop()`. See each module for details.
"""

from .ollama import FakeOllama
from .openai import (
    ChatRequest,
    Delay,
    Error,
    FakeOpenAI,
    Reply,
    Script,
    Text,
    ToolCall,
    example_for_schema,
    sequence,
    tokens_for,
    verdict_rules,
)
from .receiver import Answer, ReceivedWebhook, WebhookReceiver
from .search import FakeBrave, FakeSearxng, FakeTavily, Hit, SearchFake
from .server import Failure, FakeService, LocalServer, RecordedRequest
from .stalling import StallingServer
from .web import FakeWeb, article_html

__all__ = [
    "Answer",
    "ChatRequest",
    "Delay",
    "Error",
    "Failure",
    "FakeBrave",
    "FakeOllama",
    "FakeOpenAI",
    "FakeSearxng",
    "FakeService",
    "FakeTavily",
    "FakeWeb",
    "Hit",
    "LocalServer",
    "ReceivedWebhook",
    "RecordedRequest",
    "Reply",
    "Script",
    "SearchFake",
    "StallingServer",
    "Text",
    "ToolCall",
    "WebhookReceiver",
    "article_html",
    "example_for_schema",
    "sequence",
    "tokens_for",
    "verdict_rules",
]
