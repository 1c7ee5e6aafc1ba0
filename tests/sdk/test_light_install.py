"""`pip install torale` (no extras) into a new virtualenv: the SDK and the client CLI, without
the server's libraries, talking to a real server and to a newer one.

Slow on purpose (marked `light_install`): it builds the package from a copy of this worktree
and installs it with pip, from pip's cache and the package index (about half a minute with a
warm cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.api_server import Api, MakeUser
from tests.sdk.newer_server import NEW_BEHAVIOR, NEW_STATE, NewerServer

pytestmark = [pytest.mark.light_install, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
# Distributions (normalised names) that only the server needs.
SERVER_ONLY = {
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "temporalio",
    "pydantic-ai-slim",
    "trafilatura",
    "croniter",
    "pydantic-settings",
    "email-validator",
    "apprise",
    "redis",
    "limits",
    "openai",
}
# httpx, pydantic, typer, rich and what they need (18 today); room for a few more, not for a
# server library.
MAX_DISTRIBUTIONS = 25


@dataclass(frozen=True)
class LightInstall:
    bin: Path
    distributions: list[str]

    def run(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, **(env or {})},
        )


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> LightInstall:
    """A new virtualenv with `pip install <a copy of this worktree>` and nothing else."""
    work = tmp_path_factory.mktemp("light-install")
    source = work / "torale"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = venv / "bin" / "python"
    # This environment's pip installs into the new one (no pip of its own to bootstrap).
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target), "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    listed = subprocess.run(
        [
            str(target),
            "-c",
            "import importlib.metadata as m, json; "
            "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return LightInstall(bin=venv / "bin", distributions=json.loads(listed.stdout))


def test_no_server_library_is_installed(light: LightInstall) -> None:
    names = {_normalise(name) for name in light.distributions}
    assert "torale" in names
    assert {"httpx", "pydantic", "typer", "rich"} <= names
    assert not names & SERVER_ONLY, sorted(names & SERVER_ONLY)
    others = sorted(names - {"torale"})
    assert len(others) <= MAX_DISTRIBUTIONS, others


def test_the_sdk_imports_and_the_cli_helps(light: LightInstall) -> None:
    imported = light.run(
        "python",
        "-c",
        "import torale; from torale.sdk import Torale; from torale import monitor; "
        "print(Torale.__name__, torale.__version__)",
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("Torale ")
    for args in (["torale", "--help"], ["torale", "task", "--help"], ["torale", "auth", "--help"]):
        shown = light.run(*args, env={"COLUMNS": "200"})
        assert shown.returncode == 0, shown.stderr
    assert "pip install 'torale[server]'" in light.run("torale", "--help").stdout


@pytest.mark.parametrize("args", [["serve"], ["migrate"], ["keys", "create", "--email", "a@b.c"]])
def test_server_commands_say_what_to_install(light: LightInstall, args: list[str]) -> None:
    result = light.run("torale", *args)
    assert result.returncode == 1
    assert "needs the server: pip install 'torale[server]'" in result.stderr
    assert "Traceback" not in result.stderr


def client_env(url: str, key: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TORALE_API_URL": url,
        "TORALE_API_KEY": key,
        "TORALE_CONFIG_FILE": str(tmp_path / "config.json"),
        "COLUMNS": "200",
    }


def test_the_client_works_with_the_real_server(
    light: LightInstall, api: Api, make_user: MakeUser, tmp_path: Path
) -> None:
    env = client_env(api.url, make_user("light"), tmp_path)
    created = light.run(
        "torale", "task", "create", "-q", "Rust 2.0 release", "--every", "6 hours", "--json",
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    task = json.loads(created.stdout)
    assert task["schedule"] == "0 */6 * * *"
    listed = light.run("torale", "task", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [t["id"] for t in json.loads(listed.stdout)] == [task["id"]]


def test_an_older_light_sdk_reads_a_newer_server(
    light: LightInstall, newer_server: NewerServer, tmp_path: Path
) -> None:
    env = client_env(newer_server.url, "sk_" + "x" * 43, tmp_path)
    task_id = newer_server.answers.task["id"]
    read = light.run(
        "python",
        "-c",
        "from torale.sdk import Torale\n"
        f"task = Torale().tasks.get({task_id!r})\n"
        "print(task.state, task.notify_behavior, task.notifications[-1].type, task.labels)",
        env=env,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.split(maxsplit=3) == [NEW_STATE, NEW_BEHAVIOR, "sms", "['phones']\n"]
    shown = light.run("torale", "task", "get", task_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == newer_server.answers.task
