"""The README's "Use it from Python" and "Use it from the terminal" examples run as written.

The Python blocks are executed in-process (each in a fresh namespace, stdout captured) with
TORALE_API_URL / TORALE_API_KEY pointing at the test server; the shell block runs with
`bash -e -o pipefail`, `.venv/bin` first on PATH and a temporary HOME, so `torale auth
set-api-key` writes a throwaway ~/.torale/config.json (started in the background by the
conftest: see tests/sdk/readme.py). Each run uses a user of its own, so the tasks the examples
leave behind can be checked exactly.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.api_server import Api
from tests.fixtures.engine import MET
from tests.sdk.readme import PYTHON_BLOCKS, SHELL_BLOCKS, TerminalRun
from torale.sdk import NotFoundError, Torale


def test_the_sections_have_their_examples() -> None:
    assert len(PYTHON_BLOCKS) == 2
    assert len(SHELL_BLOCKS) == 1


@pytest.fixture
def signed_in(api: Api, user_key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Torale]:
    """The example's environment, and a client of the same user to check what it did."""
    monkeypatch.setenv("TORALE_API_URL", api.url)
    monkeypatch.setenv("TORALE_API_KEY", user_key)
    with Torale(api_key=user_key, api_url=api.url) as client:
        yield client


def run_python(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    return namespace


def test_the_python_example(signed_in: Torale, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = run_python(PYTHON_BLOCKS[0])
    lines = capsys.readouterr().out.splitlines()

    task, run, watcher = namespace["task"], namespace["run"], namespace["watcher"]
    assert lines[0].startswith(f"{task.id} ")
    assert lines[1] == f"success {MET['answer']}"  # the run's verdict, from the fake model
    assert run.status == "success"
    assert "When is the next iPhone release? 0 9 * * *" in lines  # the listing loop
    assert lines[-1] == "0 */6 * * *"  # print(watcher.schedule), as the comment says

    with pytest.raises(NotFoundError):  # updated, paused, then deleted
        signed_in.tasks.get(task.id)
    (left,) = list(signed_in.tasks.list())
    assert left.id == watcher.id
    assert (left.name, left.search_query, left.schedule) == (
        "Rust 2.0",
        "Rust 2.0 release",
        "0 */6 * * *",
    )
    assert left.condition_description == "A release date for Rust 2.0 has been announced"
    assert [c.model_dump(include={"type", "address"}) for c in left.notifications] == [
        {"type": "email", "address": "me@example.com"}
    ]


def test_the_async_example(signed_in: Torale, capsys: pytest.CaptureFixture[str]) -> None:
    made = signed_in.tasks.create("Async example", name="listed by the example")
    run_python(PYTHON_BLOCKS[1])
    lines = capsys.readouterr().out.splitlines()
    me = signed_in.auth.me()
    assert lines == [
        f"{me.email} {me.role}",
        made.name,
        "not found: Task not found",
    ]


def test_the_terminal_example(terminal_example: TerminalRun | None) -> None:
    run = terminal_example
    assert run is not None  # started by the conftest when this test is selected
    returncode = run.wait()
    assert returncode == 0, f"exit {returncode}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr

    config = run.home / ".torale" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"api_key": run.api_key, "api_url": run.api_url}
    assert "Signed in as" in run.stdout
    assert f"Condition met: {MET['answer']}" in run.stdout  # execute --wait
    assert "Deleted " in run.stdout

    listed = json.loads((run.workdir / "tasks.json").read_text())
    assert [t["search_query"] for t in listed] == ["When is the next iPhone release?"]

    with Torale(api_key=run.api_key, api_url=run.api_url) as client:
        (left,) = list(client.tasks.list())  # the Rust task was deleted
    assert str(left.id) == listed[0]["id"]
    assert (left.schedule, left.condition_description) == (
        "0 */6 * * *",
        "Apple has announced a date",
    )
