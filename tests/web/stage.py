"""A real `torale serve` with local fakes for the internet (search, pages, model, a webhook
receiver), seeded through the API: what the browser tests and `make screenshots` run against.
Plain Python (no pytest) so the screenshot script can use it too."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fakes import (
    FakeOpenAI,
    FakeSearxng,
    FakeWeb,
    WebhookReceiver,
    article_html,
    verdict_rules,
)
from tests.fixtures.engine import MET, NOT_MET

CHROMIUM = os.environ.get("TORALE_TEST_CHROMIUM", "/usr/bin/chromium")
KEY_RE = re.compile(r"sk_[A-Za-z0-9_-]{43}")
LINK_RE = re.compile(r"http://\S+/signin\?token=[A-Za-z0-9_-]+")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stage:
    data_dir: Path
    model: FakeOpenAI
    search: FakeSearxng
    web: FakeWeb
    receiver: WebhookReceiver
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    admin_key: str = ""
    signin_link: str = ""
    _log: list[Path] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)  # more settings for this server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
        env.update(
            {
                "TORALE_DATA_DIR": str(self.data_dir),
                "TORALE_MODEL": "fake-model",
                "TORALE_OPENAI_BASE_URL": self.model.url + "/v1",
                "TORALE_SEARCH_PROVIDER": "searxng",
                "TORALE_SEARXNG_URL": self.search.url,
                "TORALE_ALLOWED_NETWORKS": "127.0.0.1/32",
                "TORALE_ALLOW_HTTP_WEBHOOKS": "true",
                "TORALE_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
                "TORALE_RUN_TIMEOUT_SECONDS": "120",  # a preview took over 20 s at load 19
                "TORALE_PROVIDER_RETRIES": "0",
                "TORALE_RATE_LIMITS": "100000/minute",
                **self.extra_env,
            }
        )
        return env

    def start(self) -> None:
        self.port = free_port()
        out = self.data_dir / "serve.stdout"
        err = self.data_dir / "serve.stderr"
        self._log = [out, err]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "torale", "serve", "--port", str(self.port)],
                env=self.env(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"torale serve exited:\n{self.output()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"torale serve did not start:\n{self.output()}")
        stdout_text = out.read_text()
        keys = KEY_RE.findall(stdout_text)
        links = LINK_RE.findall(stdout_text)
        if keys:
            self.admin_key = keys[0]
        if links:
            self.signin_link = links[0]

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self._log if p.exists())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def torale(self, *args: str) -> str:
        """Run an operator command against this server's database; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "torale", *args],
            env=self.env(),
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def new_user(self, email: str, *, admin: bool = False) -> str:
        """A user and an API key for them."""
        return self.torale("keys", "create", "--email", email, *(["--admin"] if admin else []))

    def link_for(self, email: str) -> str:
        return self.torale("signin-link", "--email", email)

    def api(self, key: str, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(
            method,
            self.base_url + path,
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def page_url(self, path: str) -> str:
        return self.web.url + path

    def publish(self, path: str, title: str, text: str) -> str:
        self.web.set_page(path, article_html(title, [text, "More in the full story."]))
        return self.page_url(path)

    def answer(self, rules: list[tuple[str, dict[str, Any]]], default: dict[str, Any]) -> None:
        self.model.script = verdict_rules(rules, default)


@contextmanager
def stage(data_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stage]:
    """Fakes and a started server (with `extra_env`: more settings); everything stopped on
    exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        model = stack.enter_context(FakeOpenAI())
        search = stack.enter_context(FakeSearxng())
        web = stack.enter_context(FakeWeb())
        receiver = stack.enter_context(WebhookReceiver())
        made = Stage(data_dir, model, search, web, receiver, extra_env=dict(extra_env or {}))
        made.answer([("announced", MET)], NOT_MET)
        made.start()
        try:
            yield made
        finally:
            made.stop()
