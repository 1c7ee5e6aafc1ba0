"""`torale auth …` and `torale task …` through typer's CliRunner, against the real server.

Exit codes: 0 success, 1 the API refused (its message printed), 2 a usage error.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from tests.fixtures.api_server import (  # noqa: F401 - the shared server's fixtures, used here
    FAILING_QUERY,
    NEWS_TITLE,
    Api,
    Fakes,
    _no_client_config,
    api,
    config_file,
    fake_model,
    fake_search,
    fake_web,
    fakes,
    make_user,
    user_key,
)
from tests.fixtures.engine import DRAFT, MET
from tests.fixtures.sdk_examples import CONDITION, QUERY, UNKNOWN_ID
from torale.cli import app
from torale.cli.invocation import torale_command
from torale.sdk import NotFoundError, Task, Torale


@dataclass
class Cli:
    api: Api
    key: str
    runner: CliRunner

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> Result:
        """`torale ARGS` signed in through TORALE_API_URL / TORALE_API_KEY."""
        full_env = {
            "TORALE_API_URL": self.api.url,
            "TORALE_API_KEY": self.key,
            "COLUMNS": "200",
            **(env or {}),
        }
        return self.runner.invoke(app, list(args), input=input, env=full_env)

    def signed_out(self, *args: str, input: str | None = None) -> Result:
        """`torale ARGS` with only the config file (no TORALE_API_*)."""
        return self.runner.invoke(app, list(args), input=input, env={"COLUMNS": "200"})


@pytest.fixture
def cli(api: Api, user_key: str) -> Cli:
    return Cli(api=api, key=user_key, runner=CliRunner())


@pytest.fixture
def sdk(api: Api, user_key: str) -> Iterator[Torale]:
    with Torale(api_key=user_key, api_url=api.url) as client:
        yield client


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def parsed(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- auth --------------------------------------------------------------------------------


def test_set_api_key_status_and_logout(cli: Cli, config_file: Path) -> None:
    signed_out = cli.signed_out("auth", "status")
    assert signed_out.exit_code == 1
    assert "Not signed in" in signed_out.stderr

    saved = ok(
        cli.signed_out("auth", "set-api-key", "--api-key", cli.key, "--api-url", cli.api.url)
    )
    assert "Signed in as sdk-" in saved.stdout
    assert f"at {cli.api.url}" in saved.stdout
    assert str(config_file) in saved.stdout
    assert mode_of(config_file) == 0o600
    assert json.loads(config_file.read_text()) == {"api_key": cli.key, "api_url": cli.api.url}

    status = ok(cli.signed_out("auth", "status"))
    assert "Signed in as sdk-" in status.stdout
    assert "(user)" in status.stdout
    as_json = parsed(cli.signed_out("auth", "status", "--json"))
    assert as_json["api_url"] == cli.api.url
    assert as_json["user"]["role"] == "user"
    assert as_json["user"]["email"].startswith("sdk-")
    assert parsed(cli.signed_out("task", "list", "--json")) == []  # the file is enough

    logout = ok(cli.signed_out("auth", "logout"))
    assert "Removed the API key" in logout.stdout
    assert json.loads(config_file.read_text()) == {"api_url": cli.api.url}
    assert mode_of(config_file) == 0o600
    after = cli.signed_out("auth", "status")
    assert after.exit_code == 1
    assert "Not signed in" in after.stderr


def test_set_api_key_prompts_for_the_key_without_echoing_it(cli: Cli, config_file: Path) -> None:
    result = ok(
        cli.signed_out("auth", "set-api-key", "--api-url", cli.api.url, input=cli.key + "\n")
    )
    assert cli.key not in result.output
    assert json.loads(config_file.read_text())["api_key"] == cli.key


def test_a_key_the_server_refuses_is_not_saved(cli: Cli, config_file: Path) -> None:
    result = cli.signed_out(
        "auth", "set-api-key", "--api-key", "sk_" + "z" * 43, "--api-url", cli.api.url
    )
    assert result.exit_code == 1
    assert "Error:" in result.stderr
    assert "torale auth set-api-key" in result.stderr  # what to do
    assert not config_file.exists()


def test_set_api_key_without_verifying(cli: Cli, config_file: Path) -> None:
    result = ok(
        cli.signed_out(
            "auth",
            "set-api-key",
            "--api-key",
            "sk_later",
            "--api-url",
            "http://127.0.0.1:9/",
            "--no-verify",
        )
    )
    assert "Saved" in result.stdout
    assert json.loads(config_file.read_text()) == {
        "api_key": "sk_later",
        "api_url": "http://127.0.0.1:9",
    }


def test_a_bad_key_in_the_environment_exits_1_with_what_to_do(cli: Cli) -> None:
    result = cli("task", "list", env={"TORALE_API_KEY": "sk_" + "q" * 43})
    assert result.exit_code == 1
    assert "Error:" in result.stderr
    # The hint spells the command so that it runs as printed (torale may not be on PATH).
    assert f"Save a valid key with: {torale_command()} auth set-api-key" in result.stderr


def test_an_unreachable_server_exits_1(cli: Cli) -> None:
    result = cli("auth", "status", env={"TORALE_API_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 1
    assert "Cannot reach the Torale API" in result.stderr
    assert "--api-url" in result.stderr


# --- tasks -------------------------------------------------------------------------------


def test_create_as_json_and_as_a_table(cli: Cli, sdk: Torale, api: Api) -> None:
    created = parsed(
        cli(
            "task", "create", "-q", QUERY, "-c", CONDITION, "--name", "iPhone release",
            "--every", "6 hours", "--timezone", "Europe/Berlin", "--url", "https://a.example/",
            "--notify", "always", "--webhook", f"{api.url}/hook", "--email", "me@example.com",
            "--search", "searxng", "--paused", "--json",
        )
    )  # fmt: skip
    task = Task.model_validate(created)
    assert (task.name, task.search_query, task.condition_description) == (
        "iPhone release",
        QUERY,
        CONDITION,
    )
    assert (task.schedule, task.timezone, task.state) == ("0 */6 * * *", "Europe/Berlin", "paused")
    assert (task.notify_behavior, task.urls) == ("always", ["https://a.example/"])
    assert [c.type for c in task.notifications] == ["webhook", "email"]
    assert task.config.search_provider == "searxng"
    assert sdk.tasks.get(task.id).name == "iPhone release"
    # --json prints what the server answered: no field added (config has no `model: null`).
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {cli.key}"}) as http:
        raw = http.get(f"/api/v1/tasks/{task.id}").json()
    assert parsed(cli("task", "get", str(task.id), "--json")) == raw
    assert raw["config"] == {"search_provider": "searxng"}

    table = ok(cli("task", "create", "-q", "Rust 2.0 release", "--every", "daily", "--run-now"))
    assert "Rust 2.0 release" in table.stdout
    assert "0 9 * * * (UTC)" in table.stdout
    assert "state          active" in table.stdout
    assert len(list(sdk.tasks.list())) == 2


def test_create_from_a_sentence(cli: Cli, sdk: Torale) -> None:
    sentence = "tell me when the next iPhone is announced"
    declined = cli("task", "create", "--from", sentence, input="n\n")
    assert declined.exit_code == 1
    assert f"{DRAFT['name']}  (a draft: not saved yet)" in declined.stdout
    assert "query          next iPhone announcement date" in declined.stdout
    assert "schedule       0 0 * * * (UTC)" in declined.stdout
    assert DRAFT["explanation"] in declined.stdout
    assert "Create this task?" in declined.stdout
    assert list(sdk.tasks.list()) == []  # nothing saved without a yes

    accepted = ok(cli("task", "create", "--from", sentence, input="y\n"))
    assert "state          active" in accepted.stdout
    (task,) = sdk.tasks.list()
    assert (task.name, task.search_query, task.schedule) == (
        DRAFT["name"],
        DRAFT["search_query"],
        "0 0 * * *",
    )

    # --yes does not ask; options given as well override the draft; --json prints the task
    # (the draft goes to stderr).
    created = parsed(
        cli("task", "create", "--from", sentence, "--yes", "--every", "6 hours", "--json")
    )
    assert (created["name"], created["schedule"]) == (DRAFT["name"], "0 */6 * * *")
    assert len(list(sdk.tasks.list())) == 2


def test_list_get_update_pause_resume(cli: Cli, sdk: Torale) -> None:
    task = sdk.tasks.create(QUERY, name="Phone watch", condition_description=CONDITION)
    other = sdk.tasks.create("something else", name="Other", state="paused")

    table = ok(cli("task", "list")).stdout
    assert str(task.id) in table
    assert "Phone watch" in table
    assert "0 9 * * *" in table
    listed = parsed(cli("task", "list", "--json"))
    assert [t["id"] for t in listed] == [str(other.id), str(task.id)]
    assert [t["id"] for t in parsed(cli("task", "list", "--state", "paused", "--json"))] == [
        str(other.id)
    ]

    shown = ok(cli("task", "get", str(task.id))).stdout
    assert "Phone watch" in shown
    assert CONDITION in shown
    assert parsed(cli("task", "get", str(task.id), "--json"))["name"] == "Phone watch"

    updated = parsed(
        cli("task", "update", str(task.id), "--every", "30 minutes", "--name", "Renamed", "--json")
    )
    assert (updated["schedule"], updated["name"]) == ("*/30 * * * *", "Renamed")
    assert updated["condition_description"] == CONDITION
    assert "Renamed" in ok(cli("task", "update", str(task.id), "-c", "A date is out")).stdout
    assert sdk.tasks.get(task.id).condition_description == "A date is out"

    assert "Paused Renamed" in ok(cli("task", "pause", str(task.id))).stdout
    assert sdk.tasks.get(task.id).state == "paused"
    resumed = ok(cli("task", "resume", str(task.id))).stdout
    assert "Resumed Renamed" in resumed
    assert "next run 20" in resumed
    assert parsed(cli("task", "pause", str(task.id), "--json"))["state"] == "paused"
    assert parsed(cli("task", "resume", str(task.id), "--json"))["state"] == "active"


def test_execute_wait_prints_the_verdict_and_sources(cli: Cli, sdk: Torale, fakes: Fakes) -> None:
    task = sdk.tasks.create(QUERY, condition_description=CONDITION, notify_behavior="always")
    result = ok(cli("task", "execute", str(task.id), "--wait"))
    out = result.stdout
    assert ": success" in out
    assert f"Condition met: {MET['answer']}" in out
    assert f"why: {MET['reasoning']}" in out
    assert f"- {NEWS_TITLE} <{fakes.news_url}>" in out
    assert "Notified." in out
    (run,) = list(sdk.tasks.executions(task.id))
    assert f"Execution {run.id}: success" in out

    as_json = parsed(cli("task", "execute", str(task.id), "--wait", "--json"))
    assert as_json["status"] == "success"
    assert as_json["result"]["answer"] == MET["answer"]
    assert as_json["grounding_sources"] == [{"url": fakes.news_url, "title": NEWS_TITLE}]


def test_execute_without_wait(cli: Cli, sdk: Torale) -> None:
    task = sdk.tasks.create(QUERY)
    started = parsed(cli("task", "execute", str(task.id), "--json"))
    assert started["status"] in ("pending", "running")
    assert started["task_id"] == str(task.id)


def test_a_failed_run_exits_1_with_its_error(cli: Cli, sdk: Torale) -> None:
    task = sdk.tasks.create(FAILING_QUERY)  # the fake model answers it with a 401
    result = cli("task", "execute", str(task.id), "--wait")
    assert result.exit_code == 1, result.output
    assert ": failed" in result.stdout
    (run,) = list(sdk.tasks.executions(task.id))
    assert run.status == "failed"
    assert run.error_message
    assert run.error_message.split("\n")[0][:40] in result.stderr


def test_a_failed_run_exits_1_with_json_too(cli: Cli, sdk: Torale) -> None:
    """--json prints the failed execution (a script can read why) and exits 1 as the table
    mode does, so that `set -e` and `&&` stop."""
    task = sdk.tasks.create(FAILING_QUERY)
    result = cli("task", "execute", str(task.id), "--wait", "--json")
    assert result.exit_code == 1, result.output
    printed = json.loads(result.stdout)
    assert printed["status"] == "failed"
    assert printed["error_message"]


def test_an_api_url_without_a_scheme_exits_1_with_what_to_write(cli: Cli) -> None:
    result = cli("task", "list", env={"TORALE_API_URL": "torale.example.com"})
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "TORALE_API_URL" in result.stderr
    assert "https://torale.example.com" in result.stderr
    status = cli("auth", "status", env={"TORALE_API_URL": "torale.example.com"})
    assert status.exit_code == 1, status.output
    assert "TORALE_API_URL" in status.stderr


def test_set_api_key_takes_a_loopback_url_without_a_scheme(cli: Cli, config_file: Path) -> None:
    bare = cli.api.url.removeprefix("http://")
    ok(cli.signed_out("auth", "set-api-key", "--api-key", cli.key, "--api-url", bare))
    assert json.loads(config_file.read_text())["api_url"] == cli.api.url
    refused = cli.signed_out(
        "auth", "set-api-key", "--api-key", cli.key, "--api-url", "torale.example.com"
    )
    assert refused.exit_code == 1, refused.output
    assert "--api-url" in refused.stderr


def test_preview(cli: Cli, sdk: Torale, fakes: Fakes) -> None:
    out = ok(cli("task", "preview", "-q", QUERY, "-c", CONDITION)).stdout
    assert f"Condition met: {MET['answer']}" in out
    assert f"<{fakes.news_url}>" in out
    as_json = parsed(cli("task", "preview", "-q", QUERY, "--search", "searxng", "--json"))
    assert as_json["answer"] == MET["answer"]
    assert as_json["grounding_sources"] == [{"url": fakes.news_url, "title": NEWS_TITLE}]
    assert list(sdk.tasks.list()) == []  # nothing saved


def test_logs_and_notifications(cli: Cli, sdk: Torale) -> None:
    task = sdk.tasks.create(QUERY, notify_behavior="always")
    first = sdk.tasks.execute(task.id, wait=True)
    second = sdk.tasks.execute(task.id, wait=True)

    table = ok(cli("task", "logs", str(task.id))).stdout
    assert str(first.id) in table
    assert str(second.id) in table
    assert "success" in table
    assert "manual" in table
    logs = parsed(cli("task", "logs", str(task.id), "--json"))
    assert [e["id"] for e in logs] == [str(second.id), str(first.id)]
    assert [
        e["id"] for e in parsed(cli("task", "logs", str(task.id), "--limit", "1", "--json"))
    ] == [str(second.id)]

    notes = ok(cli("task", "notifications", str(task.id))).stdout
    assert str(second.id) in notes
    assert "yes" in notes  # condition met
    notified = parsed(cli("task", "notifications", str(task.id), "--json"))
    assert [e["id"] for e in notified] == [str(second.id), str(first.id)]
    assert all(e["notification"] for e in notified)


def test_delete_asks_unless_yes(cli: Cli, sdk: Torale) -> None:
    task = sdk.tasks.create(QUERY)
    declined = cli("task", "delete", str(task.id), input="n\n")
    assert declined.exit_code == 1
    assert sdk.tasks.get(task.id).id == task.id  # still there

    confirmed = ok(cli("task", "delete", str(task.id), input="y\n"))
    assert f"Deleted {task.id}" in confirmed.stdout
    with pytest.raises(NotFoundError):
        sdk.tasks.get(task.id)

    again = sdk.tasks.create(QUERY)
    assert f"Deleted {again.id}" in ok(cli("task", "delete", str(again.id), "--yes")).stdout
    assert list(sdk.tasks.list()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["task", "get", UNKNOWN_ID],
        ["task", "get", UNKNOWN_ID, "--json"],
        ["task", "update", UNKNOWN_ID, "--name", "x"],
        ["task", "delete", UNKNOWN_ID, "--yes"],
        ["task", "pause", UNKNOWN_ID],
        ["task", "resume", UNKNOWN_ID],
        ["task", "execute", UNKNOWN_ID, "--wait"],
        ["task", "logs", UNKNOWN_ID],
        ["task", "notifications", UNKNOWN_ID],
    ],
)
def test_an_unknown_task_exits_1_with_the_apis_message(cli: Cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert "Error: Task not found" in result.stderr
    assert result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_refused_field_exits_1_with_the_field(cli: Cli) -> None:
    result = cli("task", "create", "-q", QUERY, "--every", "61 * * * *")
    assert result.exit_code == 1
    assert "schedule:" in result.stderr
    result = cli("task", "create", "-q", QUERY, "--timezone", "Mars/Base")
    assert result.exit_code == 1
    assert "timezone:" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["task", "list", "--bogus"],
        ["task", "create"],  # -q or --url is required
        ["task", "create", "-q"],
        ["task", "logs", UNKNOWN_ID, "--limit", "0"],
        ["task", "frobnicate"],
        ["task", "get"],
        ["task", "update", UNKNOWN_ID],  # nothing to change
        ["auth", "whoami"],
    ],
)
def test_usage_errors_exit_2(cli: Cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize(
    "args",
    [
        ["task", "get", "not-a-uuid"],
        ["task", "delete", "42", "--yes"],
        ["task", "create", "-q", QUERY, "--every", "7 hours"],
        ["task", "update", UNKNOWN_ID, "--every", "45 minutes"],
    ],
)
def test_malformed_input_is_a_usage_error_not_a_traceback(cli: Cli, args: list[str]) -> None:
    """A malformed id or an --every cron cannot express is the user's mistake: exit 2 with a
    message, as for any other bad option, not an uncaught exception."""
    result = cli(*args)
    assert not isinstance(result.exception, ValueError), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip()


def test_help_lists_every_command(cli: Cli) -> None:
    help_text = ok(cli("task", "--help")).stdout
    for command in (
        "create", "list", "get", "update", "delete", "pause", "resume", "execute", "preview",
        "logs", "notifications",
    ):  # fmt: skip
        assert command in help_text
    top = ok(cli("--help")).stdout
    for command in ("auth", "task", "serve", "migrate", "keys", "users"):
        assert command in top
    assert "set-api-key" in ok(cli("auth", "--help")).stdout
