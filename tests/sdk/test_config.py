"""Where the SDK finds the server and key: argument > environment > config file > default."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.fixtures.api_server import Api
from torale.sdk import APIError, AuthenticationError, ConfigurationError, Torale, ToraleAsync
from torale.sdk.config import DEFAULT_API_URL, config_path, read_config, resolve, write_config

BAD_KEY = "sk_" + "b" * 43
NOWHERE = "http://127.0.0.1:9"  # nothing listens on the discard port


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def test_defaults_without_any_configuration(config_file: Path) -> None:
    assert not config_file.exists()
    assert DEFAULT_API_URL == "http://localhost:8000"
    with Torale() as client:
        assert client.api_url == "http://localhost:8000"
        assert client.policy.api_key is None
        assert "Authorization" not in client.http.headers
        assert str(client.http.base_url).rstrip("/") == "http://localhost:8000"


def test_the_config_file_is_used_when_nothing_else_is_set(api: Api, config_file: Path) -> None:
    write(config_file, {"api_key": api.admin_key, "api_url": api.url})
    with Torale() as client:
        assert client.api_url == api.url
        assert client.auth.me().role == "admin"  # the key from the file works


async def test_the_async_client_reads_the_file_too(api: Api, config_file: Path) -> None:
    write(config_file, {"api_key": api.admin_key, "api_url": api.url + "/"})
    async with ToraleAsync() as client:
        assert client.api_url == api.url  # trailing slash dropped
        assert (await client.auth.me()).email == "admin@localhost"


def test_environment_beats_the_file(
    api: Api, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(config_file, {"api_key": BAD_KEY, "api_url": NOWHERE})
    monkeypatch.setenv("TORALE_API_KEY", api.admin_key)
    monkeypatch.setenv("TORALE_API_URL", api.url)
    with Torale() as client:
        assert client.api_url == api.url
        assert client.auth.me().role == "admin"


def test_each_value_is_resolved_on_its_own(
    api: Api, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(config_file, {"api_key": api.admin_key, "api_url": NOWHERE})
    monkeypatch.setenv("TORALE_API_URL", api.url)  # the URL from the environment,
    with Torale() as client:  # the key from the file
        assert client.auth.me().role == "admin"
    monkeypatch.delenv("TORALE_API_URL")
    monkeypatch.setenv("TORALE_API_KEY", BAD_KEY)
    with Torale(api_url=api.url) as client, pytest.raises(AuthenticationError):
        client.auth.me()  # the environment's (bad) key wins over the file's


def test_arguments_beat_the_environment_and_the_file(
    api: Api, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(config_file, {"api_key": BAD_KEY, "api_url": NOWHERE})
    monkeypatch.setenv("TORALE_API_KEY", BAD_KEY)
    monkeypatch.setenv("TORALE_API_URL", NOWHERE)
    with Torale(api_key=api.admin_key, api_url=api.url) as client:
        assert client.auth.me().role == "admin"
    assert resolve("sk_arg", "http://arg.example/") == resolve("sk_arg", "http://arg.example")
    assert resolve("sk_arg", "http://arg.example").api_key == "sk_arg"


def test_the_file_defaults_to_home_dot_torale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TORALE_CONFIG_FILE")
    assert config_path() == home / ".torale" / "config.json"
    path = write_config({"api_key": "sk_home", "api_url": "http://home.example"})
    assert path == home / ".torale" / "config.json"
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert resolve().api_url == "http://home.example"
    assert resolve().api_key == "sk_home"


def test_write_config_merges_removes_and_keeps_the_file_private(config_file: Path) -> None:
    write(config_file, {"api_url": "http://old.example"})
    config_file.chmod(0o644)
    write_config({"api_key": "sk_one"})
    assert mode_of(config_file) == 0o600
    assert json.loads(config_file.read_text()) == {
        "api_url": "http://old.example",
        "api_key": "sk_one",
    }
    write_config({"api_key": None, "api_url": "http://new.example"})
    assert read_config() == {"api_url": "http://new.example"}
    assert mode_of(config_file) == 0o600


def test_a_broken_or_foreign_file_is_ignored(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text("{not json")
    assert read_config() == {}
    assert resolve().api_url == DEFAULT_API_URL
    write(config_file, {"api_key": "", "theme": "dark", "api_url": "http://x.example"})
    assert read_config() == {"api_url": "http://x.example"}


# --- a missing key, an API URL without a scheme ---------------------------------------------


def test_no_key_anywhere_says_where_a_key_goes(api: Api, config_file: Path) -> None:
    with Torale(api_url=api.url) as client, pytest.raises(AuthenticationError) as refused:
        client.auth.me()
    assert refused.value.status_code == 401
    assert "TORALE_API_KEY" in refused.value.message
    assert "torale auth set-api-key" in refused.value.message
    assert "api_key=" in refused.value.message


async def test_no_key_async(api: Api, config_file: Path) -> None:
    async with ToraleAsync(api_url=api.url) as client:
        with pytest.raises(AuthenticationError, match="TORALE_API_KEY"):
            await client.auth.me()


def test_a_wrong_key_is_not_called_missing(api: Api, config_file: Path) -> None:
    with (
        Torale(api_key=BAD_KEY, api_url=api.url) as client,
        pytest.raises(AuthenticationError) as refused,
    ):
        client.auth.me()
    assert "No API key" not in refused.value.message


def test_a_loopback_url_without_a_scheme_is_http(
    api: Api, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`localhost:8000` is taken as http://: nothing leaves the machine (documented)."""
    assert api.url.startswith("http://")
    bare = api.url.removeprefix("http://")  # 127.0.0.1:PORT
    monkeypatch.setenv("TORALE_API_URL", bare)
    with Torale(api_key=api.admin_key) as client:
        assert client.api_url == api.url
        assert client.auth.me().role == "admin"
    port = bare.rsplit(":", 1)[1]
    for host in ("localhost", "LOCALHOST", "127.0.0.5", "[::1]", "app.localhost"):
        assert resolve(api_url=f"{host}:{port}/").api_url == f"http://{host}:{port}"


@pytest.mark.parametrize(
    ("where", "url"),
    [
        ("TORALE_API_URL", "torale.example.com"),
        ("TORALE_API_URL", "torale.example.com:8000"),
        ("TORALE_API_URL", "10.0.0.5:8000"),
        ("api_url", "ftp://torale.example.com"),
        ("file", "torale.example.com"),
    ],
)
def test_an_api_url_that_cannot_work_is_refused_at_once_with_what_to_write(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, where: str, url: str
) -> None:
    api_url: str | None = None
    if where == "TORALE_API_URL":
        monkeypatch.setenv("TORALE_API_URL", url)
    elif where == "file":
        write(config_file, {"api_url": url})
    else:
        api_url = url
    with pytest.raises(ConfigurationError) as refused:
        Torale(api_url=api_url)
    message = refused.value.message
    assert where.replace("file", str(config_file)) in message
    assert "https://" in message
    assert isinstance(refused.value, APIError)
    with pytest.raises(ConfigurationError):
        ToraleAsync(api_url=api_url)
