"""What `torale serve` and `torale worker` say when they start without a usable model, and the
first-start banner's operator command (the banner itself runs for real in tests/e2e)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from torale.cli.invocation import torale_command
from torale.cli.server import model_warning, operator_prefix
from torale.config import Settings, default_data_dir


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_no_model_names_what_to_set_and_what_works_meanwhile() -> None:
    warning = model_warning(settings(), {})
    assert warning is not None
    assert "no model is configured" in warning
    for name in (
        "TORALE_MODEL",
        "OPENAI_API_KEY",
        "GOOGLE_API_KEY",
        "ANTHROPIC_API_KEY",
        "TORALE_OPENAI_BASE_URL",
    ):
        assert name in warning
    assert "google-gla" not in warning  # gone from pydantic-ai 2
    assert "everything else works" in warning
    assert "creating and scheduling tasks" in warning


@pytest.mark.parametrize(
    ("model", "variable"),
    [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),
        ("google:gemini-2.5-flash", "GOOGLE_API_KEY"),
        ("anthropic:claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
    ],
)
def test_a_model_without_its_key_names_the_variable(model: str, variable: str) -> None:
    warning = model_warning(settings(model=model), {})
    assert warning is not None
    assert f"{variable} is not set" in warning
    assert "no model is configured" not in warning
    assert model_warning(settings(model=model), {variable: "k"}) is None


def test_nothing_to_say_when_runs_can_work() -> None:
    # An OpenAI-compatible server may need no key; an unlisted provider is not second-guessed.
    local = settings(model="llama3.1:8b", openai_base_url="http://127.0.0.1:11434/v1")
    assert model_warning(local, {}) is None
    assert model_warning(settings(model="test"), {}) is None


def test_the_operator_command_carries_the_servers_database(tmp_path: Path) -> None:
    assert operator_prefix(settings(data_dir=default_data_dir())) == ("", "")
    prefix, note = operator_prefix(settings(data_dir=tmp_path / "my data"))
    assert prefix == f"TORALE_DATA_DIR='{tmp_path / 'my data'}' "
    assert note == ""
    sqlite_file = settings(database_url=f"sqlite:///{tmp_path}/t.db")
    assert operator_prefix(sqlite_file)[0].startswith("TORALE_DATABASE_URL=")
    # A password or a secret key is never printed: the note asks for the server's.
    secret = settings(database_url="postgresql://u:hunter2@db/torale", secret_key="s3cret")
    prefix, note = operator_prefix(secret)
    assert prefix == ""
    assert "hunter2" not in note
    assert "s3cret" not in note
    assert "TORALE_DATABASE_URL" in note
    assert "TORALE_SECRET_KEY" in note


def test_the_torale_command_runs_as_printed_with_or_without_the_venv_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    printed = torale_command()
    assert printed != "torale"  # `torale` alone would be "command not found"
    assert Path(shlex.split(printed)[0]).is_absolute()
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert torale_command() == "torale"

    for path, command in (("/usr/bin:/bin", printed), (f"{venv_bin}:/usr/bin:/bin", "torale")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
        env["PATH"] = path
        done = subprocess.run(
            ["/bin/sh", "-c", f"{command} --help"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr)
        assert "auth" in done.stdout
