"""Settings: one object, read once from `TORALE_*` environment variables and `.env`."""

from __future__ import annotations

import ipaddress
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from torale.engine.search.base import SearchProviderName


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "torale"


class Settings(BaseSettings):
    """Every setting Torale reads. Field descriptions are the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="TORALE_", env_file=".env", extra="ignore", frozen=False
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the SQLite database and the generated secret key live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: SQLite in the data directory. "
        "`postgresql://user@host/db` selects PostgreSQL (asyncpg).",
    )
    database_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="PostgreSQL: the longest wait to connect, and for one statement; past it "
        "the request answers 503 instead of hanging while the database is unreachable.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key for hashing API keys. Default: generated once into the data directory. "
        "Set it explicitly when several hosts share one database.",
    )
    host: str = Field(default="127.0.0.1", description="Address `torale serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `torale serve` binds to.")
    log_level: str = Field(
        default="info",
        description="Log level (debug, info, warning, error). At every level, URLs in the log "
        "show only their scheme and host, and the HTTP and Apprise libraries (whose lines carry "
        "request paths and channel URLs) log nothing.",
    )
    migrate_on_start: bool = Field(
        default=True, description="`torale serve` brings the schema up to date before serving."
    )
    public_url: str | None = Field(
        default=None,
        description="The address people open Torale at (`https://torale.example.com`), used in "
        "printed sign-in links; session cookies are `Secure` when it is https. Default: "
        "`http://localhost:PORT`.",
    )
    session_idle_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="A browser session unused this long ends (sign in again).",
    )
    session_max_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=60,
        description="A browser session ends this long after sign-in, however active.",
    )
    admin_email: str = Field(
        default="admin@localhost",
        description="Email of the admin user created on first start with an empty database.",
    )

    redis_url: str | None = Field(
        default=None,
        description="Redis URL (`redis://host:6379/0`). When set, rate-limit counters are shared "
        "by every process using it.",
    )
    rate_limits: str = Field(
        default="100/minute;1000/hour;10000/day",
        description="Rate-limit windows per user (all of a user's API keys and sign-in tokens "
        "share them), `;`-separated.",
    )
    auth_failure_limits: str = Field(
        default="30/minute",
        description="Failed authentication attempts allowed per client address, `;`-separated "
        "windows; past them the address is answered 429 until the window ends.",
    )

    min_schedule_seconds: int = Field(
        default=300,
        ge=60,
        description="Shortest allowed time between two runs of a task's cron schedule.",
    )
    allow_http_webhooks: bool = Field(
        default=False, description="Accept plain `http://` webhook URLs (otherwise https only)."
    )
    allow_private_networks: bool = Field(
        default=False,
        description="Allow outbound requests to private, loopback and link-local addresses "
        "(intranet installs and tests).",
    )
    task_list_cache_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="Memory for cached pages of task lists (0 turns the cache off).",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted (413 above)."
    )

    # --- the engine: search, fetch, evaluate -------------------------------------------------
    model: str | None = Field(
        default=None,
        description="Model for evaluating tasks, as pydantic-ai names it: `openai:gpt-4o-mini`, "
        "`google:gemini-2.5-flash`, `anthropic:claude-sonnet-4-5`, … (with the provider's "
        "key in its usual variable, e.g. OPENAI_API_KEY, GOOGLE_API_KEY), or a model name on "
        "the `TORALE_OPENAI_BASE_URL` server. Tasks may set their own in `config.model`.",
    )
    allowed_models: str = Field(
        default="",
        description="Models tasks may choose in `config.model` (and previews), comma-separated, "
        "besides `TORALE_MODEL`; `*` allows any name (each one is billed to you). Default: "
        "only `TORALE_MODEL`.",
    )
    openai_base_url: str | None = Field(
        default=None,
        description="An OpenAI-compatible server (Ollama `http://localhost:11434/v1`, vLLM, "
        "llama.cpp); model names without a provider prefix are served from it.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None, description="API key for `TORALE_OPENAI_BASE_URL`, if it needs one."
    )
    ollama_autodetect: bool = Field(
        default=True,
        description="With neither TORALE_MODEL nor TORALE_OPENAI_BASE_URL set, `torale serve` and "
        "`torale worker` look for a local Ollama at TORALE_OLLAMA_URL when they start and, if it "
        "has a chat model, use the first one (and say so). `false` turns this off.",
    )
    ollama_url: str = Field(
        default="http://127.0.0.1:11434",
        description="Where the local Ollama is looked for (its `/api/tags`; models are then "
        "served from its OpenAI-compatible `/v1`).",
    )
    search_provider: SearchProviderName = Field(
        default="duckduckgo",
        description="Web search: `duckduckgo` (no key), `searxng` (with TORALE_SEARXNG_URL), "
        "`tavily`, `brave` (with their keys), or `none` (read only each task's `urls`).",
    )
    searxng_url: str | None = Field(
        default=None, description="Base URL of a SearXNG instance with the JSON format enabled."
    )
    tavily_api_key: SecretStr | None = Field(default=None, description="Tavily API key.")
    tavily_url: str = Field(default="https://api.tavily.com", description="Tavily API base URL.")
    brave_api_key: SecretStr | None = Field(default=None, description="Brave Search API key.")
    brave_url: str = Field(
        default="https://api.search.brave.com", description="Brave Search API base URL."
    )
    max_search_results: int = Field(
        default=5, ge=1, le=20, description="Search results read per run (besides `urls`)."
    )
    fetch_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Time limit for fetching one page, and for each search request, all of it.",
    )
    fetch_max_bytes: int = Field(
        default=2_000_000, ge=10_000, description="Largest page read; larger ones are skipped."
    )
    max_source_chars: int = Field(
        default=8_000, ge=500, description="Readable text kept per page for the model."
    )
    model_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Time limit for one model request, all of it."
    )
    run_timeout_seconds: float = Field(
        default=180.0, gt=0, description="Time limit for a whole run; past it the run fails."
    )
    provider_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of a search or model request that failed transiently (timeouts, "
        "429, 5xx), with capped exponential backoff.",
    )
    retry_backoff_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Wait before the first retry; it doubles on each retry (capped at 30 s).",
    )
    reuse_unchanged_verdicts: bool = Field(
        default=True,
        description="When a run reads exactly what the previous run read, reuse its verdict "
        "instead of asking the model again.",
    )
    worker_concurrency: int = Field(
        default=4, ge=1, le=256, description="Runs executed at the same time by one process."
    )
    selector_misses_to_notify: int = Field(
        default=3,
        ge=0,
        description="After this many runs in a row whose selector matched nothing, the task's "
        "owner is notified once (through the task's channels) which URL and selector stopped "
        "matching; not again until the selector matches again or the urls change. 0: never.",
    )
    snapshot_retention_days: float = Field(
        default=30,
        ge=0,
        description="How long runs keep the text of what they read (for sources and diffs); "
        "older runs' snapshots are pruned every hour by the processes that run background work, "
        "except each task's latest run (what the next run compares with) and the latest text "
        "of each of its URL targets. 0 keeps them forever.",
    )
    # --- the browser: pages that need JavaScript (torale/browser) ---------------------------
    browser_path: str | None = Field(
        default=None,
        description="Chromium to launch for pages read with `render: browser`: `chromium` "
        "(looked up on PATH) or a full path. Off unless this or `TORALE_BROWSER_URL` is set; "
        "needs `pip install 'torale[browser]'`.",
    )
    browser_url: SecretStr | None = Field(
        default=None,
        description="A browser to drive over the Chrome DevTools Protocol instead of launching "
        "one: `ws://browserless:3000?token=…` or `http://chrome:9222`.",
    )
    browser_concurrency: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Pages one process renders at the same time (each a browser tab); others "
        "wait for a free one.",
    )
    # --- notifications -------------------------------------------------------------------
    smtp_url: SecretStr | None = Field(
        default=None,
        description="SMTP server for email notifications: `smtp://user:pass@host:587` (STARTTLS "
        "when offered; `?starttls=required` to insist), `smtps://user:pass@host:465` (TLS).",
    )
    email_from: str = Field(
        default="Torale <torale@localhost>", description="Sender of notification emails."
    )
    email_max_per_hour: int = Field(
        default=20,
        ge=1,
        description="Emails one user can be sent per hour; more wait for the next hour.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Time limit for one webhook or Apprise delivery, all of it.",
    )
    delivery_retry_delays: str = Field(
        default="30,120,600,3600,21600,43200",
        description="Seconds to wait before each retry of a failed delivery, comma-separated; "
        "after the last one the delivery is marked failed (default: about a day in all).",
    )

    # --- scheduling ----------------------------------------------------------------------------
    scheduler: Literal["local", "temporal"] = Field(
        default="local",
        description="`local`: due runs are found in the database and run by `torale serve` and "
        "any `torale worker`; `temporal`: every active task is a Temporal Schedule and "
        "`torale worker` runs the Temporal worker.",
    )
    scheduler_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Local scheduler: how often it looks for due runs created by other processes "
        "(changes made through this process wake it at once).",
    )
    temporal_address: str = Field(
        default="127.0.0.1:7233", description="Temporal frontend address (host:port)."
    )
    temporal_namespace: str = Field(default="default", description="Temporal namespace.")
    temporal_task_queue: str = Field(default="torale", description="Temporal task queue.")
    temporal_heartbeat_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Temporal: a run whose worker stops heartbeating this long is retried on "
        "another worker.",
    )
    schedule_catchup_seconds: int = Field(
        default=3600,
        ge=60,
        description="How late a missed scheduled run may still start (once) after an outage.",
    )
    allowed_networks: str = Field(
        default="",
        description="Private networks outbound requests may reach, as comma-separated CIDRs "
        "(e.g. an intranet at `10.0.5.0/24`); `TORALE_ALLOW_PRIVATE_NETWORKS` allows all.",
    )

    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics needs `Authorization: Bearer <this token>`.",
    )

    jwt_issuer: str | None = Field(
        default=None, description="OIDC issuer (e.g. `https://your-app.clerk.accounts.dev`)."
    )
    jwt_jwks_url: str | None = Field(
        default=None, description="JWKS URL of the identity provider; enables JWT sign-in."
    )
    jwt_audience: str | None = Field(
        default=None, description="Expected `aud` claim; when unset the audience is not checked."
    )
    jwt_role_claim: str | None = Field(
        default=None,
        description="Claim that makes a signed-in user an admin when it says `admin`, as a "
        "dotted path (Clerk: `public_metadata.role` in the session token template). When set, "
        "it decides the role of token users on every sign-in.",
    )
    jwks_cache_seconds: int = Field(
        default=3600,
        ge=0,
        description="How long fetched signing keys (and the sign-in provider's discovery "
        "document) are trusted.",
    )

    oidc_issuer: str | None = Field(
        default=None,
        description="Browser sign-in with an OpenID Connect provider: its issuer URL "
        "(`https://accounts.google.com`, `https://keycloak.example/realms/main`); its "
        "`/.well-known/openid-configuration` names the rest. With `TORALE_OIDC_CLIENT_ID`, "
        'the sign-in page offers "Sign in with …". Register '
        "`TORALE_PUBLIC_URL/signin/oidc/callback` as the redirect URI at the provider.",
    )
    oidc_client_id: str | None = Field(
        default=None, description="The client id Torale has at that provider."
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        description="The client's secret (a confidential client); leave unset for a public "
        "client, which PKCE alone protects.",
    )
    oidc_scopes: str = Field(
        default="openid email profile",
        description="Scopes asked for, space-separated; must include `openid`.",
    )
    oidc_name: str | None = Field(
        default=None,
        description='The provider\'s name on the sign-in button ("Sign in with <name>"). '
        "Default: the issuer's host name.",
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if value.startswith(plain):
                return driver + value[len(plain) :]
        return value

    @field_validator("rate_limits", "auth_failure_limits")
    @classmethod
    def _check_rate_limits(cls, value: str, info: ValidationInfo) -> str:
        from torale.ratelimit import parse_rate_limits

        parse_rate_limits(value, f"TORALE_{str(info.field_name).upper()}")  # raises with why
        return value

    @field_validator("delivery_retry_delays")
    @classmethod
    def _check_delays(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError("use seconds separated by commas, e.g. 30,120,600") from None
        if not delays or any(d < 0 for d in delays):
            raise ValueError("give at least one delay, none negative")
        return value

    @property
    def retry_delays(self) -> list[float]:
        return [float(part) for part in self.delivery_retry_delays.split(",") if part.strip()]

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"{part!r} is not a network (use CIDR, e.g. 10.0.5.0/24)"
                ) from None
        return value

    @property
    def allowed_model_list(self) -> tuple[str, ...] | None:
        """The models a task may choose (TORALE_MODEL included); None: any."""
        names = [n.strip() for n in self.allowed_models.split(",") if n.strip()]
        if "*" in names:
            return None
        return tuple(dict.fromkeys([*([self.model] if self.model else []), *names]))

    @property
    def allowed_network_list(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        parts = filter(None, (p.strip() for p in self.allowed_networks.split(",")))
        return tuple(ipaddress.ip_network(p, strict=False) for p in parts)

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("use a full URL starting with http:// or https://")
        return value

    @field_validator("browser_url")
    @classmethod
    def _check_browser_url(cls, value: SecretStr | None) -> SecretStr | None:
        schemes = ("ws://", "wss://", "http://", "https://")
        if value is not None and not value.get_secret_value().startswith(schemes):
            raise ValueError("use the browser's ws:// (or http://) DevTools address")
        return value

    @model_validator(mode="after")
    def _check_browser(self) -> Settings:
        if self.browser_path and self.browser_url:
            raise ValueError(
                "set TORALE_BROWSER_PATH (a browser to launch) or TORALE_BROWSER_URL (one to "
                "connect to), not both"
            )
        return self

    @property
    def browser_enabled(self) -> bool:
        """Whether pages may be read with a browser (`render: browser`)."""
        return bool(self.browser_path or self.browser_url)

    @model_validator(mode="after")
    def _check_identity_provider(self) -> Settings:
        if bool(self.jwt_issuer) != bool(self.jwt_jwks_url):
            raise ValueError(
                "set both TORALE_JWT_ISSUER and TORALE_JWT_JWKS_URL to enable sign-in tokens, "
                "or neither"
            )
        if bool(self.oidc_issuer) != bool(self.oidc_client_id):
            raise ValueError(
                "set both TORALE_OIDC_ISSUER and TORALE_OIDC_CLIENT_ID to enable sign-in with "
                "an identity provider, or neither"
            )
        if (
            self.oidc_issuer
            and self.jwt_issuer
            and self.oidc_issuer.rstrip("/") != self.jwt_issuer.rstrip("/")
        ):
            # Accounts are found by subject alone: two providers could give one subject to
            # two different people.
            raise ValueError(
                "TORALE_OIDC_ISSUER and TORALE_JWT_ISSUER name different providers; accounts "
                "are matched by subject alone, so both must be the same provider"
            )
        return self

    @field_validator("oidc_issuer")
    @classmethod
    def _check_oidc_issuer(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("use the issuer's full URL, e.g. https://accounts.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("an issuer URL has no query, fragment or credentials")
        return value

    @field_validator("oidc_scopes")
    @classmethod
    def _check_oidc_scopes(cls, value: str) -> str:
        if "openid" not in value.split():
            raise ValueError("include `openid` (OpenID Connect sign-in needs it)")
        return value

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def oidc_display_name(self) -> str:
        """What the sign-in button calls the provider."""
        if self.oidc_name and self.oidc_name.strip():
            return self.oidc_name.strip()
        return urlsplit(self.oidc_issuer or "").hostname or "your identity provider"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'torale.db'}"

    @property
    def public_base_url(self) -> str:
        """Where people reach the server, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in ("0.0.0.0", "127.0.0.1", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        return self.public_base_url.startswith("https://")

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_jwks_url and self.jwt_issuer)

    @cached_property
    def hashing_key(self) -> bytes:
        """The key API keys are hashed with: the setting, or a file made once in the data dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Write a private temp file, then link it into place: the link is atomic, so a
            # process racing us either wins or reads the complete file of the winner.
            tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip().encode()
