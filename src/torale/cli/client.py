"""`torale auth …` and `torale task …`: the API from a terminal, through the SDK.

Tables by default, `--json` for scripts. Exit codes: 0 success, 1 the API refused or could not
be reached (the message says what to do) or the run `execute` reports failed, 2 a usage error.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from torale.cli.invocation import torale_command
from torale.sdk import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConfigurationError,
    Torale,
)
from torale.sdk.builder import condition_for, schedule_for
from torale.sdk.config import normalise_api_url, resolve, write_config

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
auth_app = typer.Typer(help="Connect the CLI to a Torale server.", no_args_is_help=True)
task_app = typer.Typer(help="Create, inspect and run your tasks.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
TaskId = Annotated[uuid.UUID, typer.Argument(help="The task's id.", metavar="TASK_ID")]


def fail(exc: APIError) -> NoReturn:
    err.print(f"[red]Error:[/red] {escape(exc.message)}")
    torale = escape(torale_command())  # works as printed, also when not on PATH
    if isinstance(exc, AuthenticationError):
        err.print(f"Save a valid key with: {torale} auth set-api-key")
    elif isinstance(exc, APIConnectionError):
        err.print(
            f"Check the server runs, or set its address: {torale} auth set-api-key --api-url URL"
        )
    raise typer.Exit(1)


@contextmanager
def api() -> Iterator[Torale]:
    """A client, with API errors turned into a message and exit code 1."""
    try:
        client = Torale()
    except ConfigurationError as exc:
        fail(exc)
    try:
        yield client
    except APIError as exc:
        fail(exc)
    finally:
        client.close()


def _as_sent(value: Any) -> Any:
    # The fields the server sent, fields this SDK does not know included; none it left out.
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    return value


def emit(value: Any) -> None:
    """JSON of a model, a list of models, or plain data: what the server answered."""
    value = [_as_sent(v) for v in value] if isinstance(value, list) else _as_sent(value)
    typer.echo(json.dumps(value, indent=2))


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


# --- auth --------------------------------------------------------------------------------


@auth_app.command("set-api-key")
def set_api_key(
    api_key: Annotated[str, typer.Option(prompt="API key", hide_input=True, help="A key (sk_…).")],
    api_url: Annotated[str | None, typer.Option(help="The server's URL.")] = None,
    verify: Annotated[bool, typer.Option(help="Check the key with the server first.")] = True,
) -> None:
    """Save an API key (and server URL) in ~/.torale/config.json, readable only by you."""
    try:
        url = normalise_api_url(api_url, "--api-url") if api_url else resolve().api_url
    except ConfigurationError as exc:
        fail(exc)
    if verify:
        try:
            with Torale(api_key=api_key, api_url=url) as checked:
                user = checked.auth.me()
        except APIError as exc:
            fail(exc)  # nothing is saved
        out.print(f"Signed in as {user.email or user.id} ({user.role}) at {url}")
    path = write_config({"api_key": api_key, "api_url": url})
    out.print(f"Saved to {path}")


@auth_app.command("status")
def status(as_json: JsonOption = False) -> None:
    """Who you are signed in as, and where."""
    try:
        connection = resolve()
    except ConfigurationError as exc:
        fail(exc)
    if not connection.api_key:
        err.print(f"Not signed in. Run: {escape(torale_command())} auth set-api-key")
        raise typer.Exit(1)
    with api() as client:
        user = client.auth.me()
    if as_json:
        emit({"api_url": connection.api_url, "user": _as_sent(user)})
        return
    out.print(f"Signed in as {user.email or user.id} ({user.role}) at {connection.api_url}")


@auth_app.command("logout")
def logout() -> None:
    """Forget the saved API key (it stays valid: revoke it on the server if it leaked)."""
    path = write_config({"api_key": None})
    out.print(f"Removed the API key from {path}")


# --- tasks -------------------------------------------------------------------------------


def _schedule(every: str) -> str:
    try:
        return schedule_for(every)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--every") from None


def task_options(
    *,
    query: str | None,
    condition: str | None,
    name: str | None,
    every: str | None,
    timezone: str | None,
    urls: list[str] | None,
    behavior: str | None,
    webhooks: list[str] | None,
    emails: list[str] | None,
    apprise: list[str] | None,
    model: str | None,
    search: str | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "search_query": query,
        "condition_description": condition,
        "name": name,
        "schedule": _schedule(every) if every else None,
        "timezone": timezone,
        "urls": urls or None,
        "notify_behavior": behavior,
    }
    channels = [{"type": "webhook", "url": u} for u in webhooks or []]
    channels += [{"type": "email", "address": a} for a in emails or []]
    channels += [{"type": "apprise", "url": a} for a in apprise or []]
    if channels:
        fields["notifications"] = channels
    config = {k: v for k, v in {"model": model, "search_provider": search}.items() if v}
    if config:
        fields["config"] = config
    return {k: v for k, v in fields.items() if v is not None}


Query = Annotated[str | None, typer.Option("--query", "-q", help="What to search for.")]
Condition = Annotated[str | None, typer.Option("--condition", "-c", help="When to notify.")]
Name = Annotated[str | None, typer.Option(help="A name for the task.")]
Every = Annotated[
    str | None,
    typer.Option("--every", help='How often: "6 hours", "30 minutes", "daily", or a cron.'),
]
Timezone = Annotated[str | None, typer.Option(help="IANA time zone of the schedule.")]
Urls = Annotated[list[str] | None, typer.Option("--url", help="A page to read on every run.")]
Behavior = Annotated[str | None, typer.Option("--notify", help="once, always or track_state.")]
Webhooks = Annotated[list[str] | None, typer.Option("--webhook", help="Notify this URL.")]
Emails = Annotated[list[str] | None, typer.Option("--email", help="Notify this address.")]
Apprises = Annotated[list[str] | None, typer.Option("--apprise", help="An Apprise URL.")]
Model = Annotated[str | None, typer.Option(help="Model for this task.")]
Search = Annotated[str | None, typer.Option(help="Search provider for this task.")]


Selectors = Annotated[
    list[str] | None,
    typer.Option(
        "--selector",
        help="The part of the page of the --url at the same position to watch: CSS, "
        "xpath:… or json:… (for JSON documents).",
    ),
]
WhenChanged = Annotated[
    bool, typer.Option("--when-changed", help="Notify when the watched text changes.")
]
WhenRules = Annotated[
    list[str] | None,
    typer.Option(
        "--when",
        help="Notify when this holds (repeatable): 'price < 50', 'price drops 10%', "
        "'contains \"In stock\"', 'not contains \"Sold out\"', 'matches \"regex\"'.",
    ),
]
WhenAny = Annotated[bool, typer.Option("--any", help="With several --when: any of them.")]


class ReadWith(StrEnum):
    """How pages are read (the API's `render`)."""

    plain = "plain"
    browser = "browser"


Render = Annotated[
    ReadWith | None,
    typer.Option(
        "--render",
        help="How to read the --url pages: plain (the HTML as served) or browser (after their "
        "JavaScript ran; the server needs TORALE_BROWSER_PATH or TORALE_BROWSER_URL).",
    ),
]
Screenshot = Annotated[
    bool,
    typer.Option(
        "--screenshot", help="Keep a PNG of each page read with the browser (see task sources)."
    ),
]


def watch_options(
    urls: list[str] | None,
    selectors: list[str] | None,
    when_changed: bool,
    when_rules: list[str] | None,
    when_any: bool,
) -> dict[str, Any]:
    """The request fields of --selector, --when-changed and --when."""
    fields: dict[str, Any] = {}
    if selectors:
        if len(selectors) > len(urls or []):
            raise typer.BadParameter("give a --url for every --selector", param_hint="--selector")
        targets: list[str | dict[str, str]] = list(urls or [])
        for index, selector in enumerate(selectors):
            targets[index] = {"url": str(targets[index]), "selector": selector}
        fields["urls"] = targets
    if when_changed and when_rules:
        raise typer.BadParameter("choose --when-changed or --when", param_hint="--when")
    if when_changed:
        fields["mode"] = "change"
    if when_rules:
        try:
            conditions = [condition_for(rule) for rule in when_rules]
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--when") from None
        fields["rules"] = {"match": "any" if when_any else "all", "conditions": conditions}
        fields["mode"] = "rules"
    return fields


def _reading(task: Any) -> str:
    """How the task's pages are read: `plain`, `browser`, with screenshots, and the pages that
    say otherwise."""
    render = str(getattr(task, "render", "plain"))
    own = [t for t in task.targets if getattr(t, "render", None) not in (None, render)]
    text = render + (", with screenshots" if getattr(task, "screenshot", False) else "")
    return text + "".join(f"; {t.url} {t.render}" for t in own)


def show_task(task: Any) -> None:
    out.print(f"[bold]{task.name}[/bold]  {task.id}")
    targets = [t.url + (f" [{t.selector}]" if t.selector else "") for t in task.targets]
    rows = [
        ("mode", getattr(task, "mode", "model")),
        ("query", task.search_query or "-"),
        ("condition", task.condition_description or "-"),
        ("watching", ", ".join(targets) or "-"),
        ("reading", _reading(task)),
        ("schedule", f"{task.schedule} ({task.timezone})"),
        ("state", task.state + (f" ({task.paused_reason})" if task.paused_reason else "")),
        ("notify", task.notify_behavior),
        ("next run", when(task.next_run)),
        ("condition met", "yes" if task.condition_met else "no"),
    ]
    if task.last_execution:
        rows.append(
            ("last run", f"{task.last_execution.status} at {when(task.last_execution.started_at)}")
        )
    for label, value in rows:
        out.print(f"  {label:<14} {value}")


def show_draft(draft: Any, explanation: str, console: Console) -> None:
    """A suggested task, before it is created."""
    console.print(f"[bold]{escape(draft.name or '(unnamed)')}[/bold]  (a draft: not saved yet)")
    targets = [
        t if isinstance(t, str) else t.url + (f" [{t.selector}]" if t.selector else "")
        for t in draft.urls
    ]
    rules = draft.rules.model_dump(mode="json", exclude_unset=True) if draft.rules else None
    rows = [
        ("mode", draft.mode or "-"),
        ("query", draft.search_query or "-"),
        ("condition", draft.condition_description or "-"),
        ("watching", ", ".join(targets) or "-"),
        ("rules", json.dumps(rules) if rules else "-"),
        ("schedule", f"{draft.schedule} ({draft.timezone})"),
        ("notify", draft.notify_behavior),
    ]
    for label, value in rows:
        console.print(f"  {label:<14} {escape(str(value))}")
    console.print(escape(explanation))


@task_app.command("create")
def create(
    query: Query = None,
    condition: Condition = None,
    name: Name = None,
    every: Every = None,
    timezone: Timezone = None,
    urls: Urls = None,
    behavior: Behavior = None,
    webhooks: Webhooks = None,
    emails: Emails = None,
    apprise: Apprises = None,
    model: Model = None,
    search: Search = None,
    selectors: Selectors = None,
    when_changed: WhenChanged = False,
    when_rules: WhenRules = None,
    when_any: WhenAny = False,
    render: Render = None,
    screenshot: Screenshot = False,
    run_now: Annotated[bool, typer.Option("--run-now", help="Run it once right away.")] = False,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Let the server's model draft the task from a sentence (\"tell me when the "
            'next iPhone is announced"); options given as well override the draft.',
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --from: create the draft without asking.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a task: a search a model judges (--query), pages watched for changes
    (--url … --when-changed) or rules (--url … --when "price < 50"), or one the server's
    model drafts from your words (--from "…")."""
    if not query and not urls and not from_:
        raise typer.BadParameter(
            'give --query, --url for pages to watch, or --from "what to watch"',
            param_hint="--query",
        )
    fields = task_options(
        query=query, condition=condition, name=name, every=every, timezone=timezone, urls=urls,
        behavior=behavior, webhooks=webhooks, emails=emails, apprise=apprise, model=model,
        search=search,
    )  # fmt: skip
    fields.update(watch_options(urls, selectors, when_changed, when_rules, when_any))
    if render:
        fields["render"] = render.value
    if screenshot:
        fields["screenshot"] = True
    if run_now:
        fields["run_immediately"] = True
    if paused:
        fields["state"] = "paused"
    with api() as client:
        if from_:
            with err.status("Asking the server's model for a draft…"):
                suggestion = client.tasks.suggest(from_)
            # The draft goes to stderr with --json, so that stdout stays the created task.
            show_draft(suggestion.task, suggestion.explanation, err if as_json else out)
            if not yes:
                typer.confirm("Create this task?", abort=True, err=as_json)
            fields = suggestion.task.fields() | fields
        task = client.tasks.create(**fields)
    if as_json:
        emit(task)
    else:
        show_task(task)


@task_app.command("list")
def list_tasks(
    state: Annotated[str | None, typer.Option(help="active, paused or completed.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Your tasks, newest first."""
    with api() as client:
        tasks = list(client.tasks.list(state=state))
    if as_json:
        emit(tasks)
        return
    table = Table("id", "name", "state", "schedule", "next run", "met", "last run")
    table.columns[0].no_wrap = True
    for t in tasks:
        last = t.last_execution.status if t.last_execution else "-"
        met = "yes" if t.condition_met else "no"
        table.add_row(str(t.id), t.name, t.state, t.schedule, when(t.next_run), met, last)
    out.print(table)


@task_app.command("get")
def get(task_id: TaskId, as_json: JsonOption = False) -> None:
    """One task."""
    with api() as client:
        task = client.tasks.get(task_id)
    if as_json:
        emit(task)
    else:
        show_task(task)


@task_app.command("update")
def update(
    task_id: TaskId,
    query: Query = None,
    condition: Condition = None,
    name: Name = None,
    every: Every = None,
    timezone: Timezone = None,
    urls: Urls = None,
    behavior: Behavior = None,
    webhooks: Webhooks = None,
    emails: Emails = None,
    apprise: Apprises = None,
    model: Model = None,
    search: Search = None,
    render: Render = None,
    screenshot: Annotated[
        bool | None,
        typer.Option(
            "--screenshot/--no-screenshot",
            help="Keep (or stop keeping) a PNG of each page read with the browser.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a task (only what you give changes; channels given replace the task's)."""
    fields = task_options(
        query=query, condition=condition, name=name, every=every, timezone=timezone, urls=urls,
        behavior=behavior, webhooks=webhooks, emails=emails, apprise=apprise, model=model,
        search=search,
    )  # fmt: skip
    fields.update(
        {
            k: v
            for k, v in (("render", render and render.value), ("screenshot", screenshot))
            if v is not None
        }
    )
    if not fields:
        err.print("Nothing to change: give at least one option (see --help).")
        raise typer.Exit(2)
    with api() as client:
        task = client.tasks.update(task_id, **fields)
    if as_json:
        emit(task)
    else:
        show_task(task)


@task_app.command("delete")
def delete(
    task_id: TaskId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a task (and its history)."""
    if not yes:
        typer.confirm(f"Delete task {task_id} and its history?", abort=True)
    with api() as client:
        client.tasks.delete(task_id)
    out.print(f"Deleted {task_id}")


@task_app.command("pause")
def pause(task_id: TaskId, as_json: JsonOption = False) -> None:
    """Stop a task's scheduled runs."""
    with api() as client:
        task = client.tasks.pause(task_id)
    if as_json:
        emit(task)
    else:
        out.print(f"Paused {task.name} ({task.id})")


@task_app.command("resume")
def resume(task_id: TaskId, as_json: JsonOption = False) -> None:
    """Resume a paused (or completed) task from its next cron time."""
    with api() as client:
        task = client.tasks.resume(task_id)
    if as_json:
        emit(task)
        return
    out.print(f"Resumed {task.name} ({task.id}); next run {when(task.next_run)}")


def show_verdict(result: Any, sources: list[Any]) -> None:
    met = "[green]met[/green]" if result.condition_met else "not met"
    # Answers name targets such as `url [#price]`: text from the server is never markup.
    out.print(f"Condition {met}: {escape(result.answer)}")
    if getattr(result, "reasoning", None):
        out.print(f"  why: {escape(result.reasoning)}")
    for source in sources:
        out.print(f"  - {escape(source.title or source.url)} <{escape(source.url)}>")


@task_app.command("execute")
def execute(
    task_id: TaskId,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a task now. Exits 1 when the run failed (with --json too, after printing it)."""
    with api() as client:
        if wait and not as_json:
            with err.status("Running… (searching, reading, asking the model)"):
                execution = client.tasks.execute(task_id, wait=True)
        else:
            execution = client.tasks.execute(task_id, wait=wait)
    if as_json:
        emit(execution)
        if execution.status == "failed":
            raise typer.Exit(1)  # as in table mode: a script can tell a failed run
        return
    out.print(f"Execution {execution.id}: {execution.status}")
    if execution.status == "failed":
        err.print(f"[red]{escape(execution.error_message or '')}[/red]")
        raise typer.Exit(1)
    if execution.result:
        show_verdict(execution.result, execution.grounding_sources)
    if execution.notification:
        out.print("Notified.")


@task_app.command("preview")
def preview(
    query: Annotated[str, typer.Option("--query", "-q", help="What to search for.")],
    condition: Condition = None,
    urls: Urls = None,
    model: Model = None,
    search: Search = None,
    as_json: JsonOption = False,
) -> None:
    """Try a query and condition without saving a task."""
    config = {k: v for k, v in {"model": model, "search_provider": search}.items() if v}
    with api() as client, err.status("Searching, reading, asking the model…"):
        result = client.tasks.preview(
            query, condition_description=condition, urls=urls, config=config or None
        )
    if as_json:
        emit(result)
        return
    show_verdict(result, result.grounding_sources)
    if result.inferred_condition:
        out.print(f"  (judged as: {result.inferred_condition})")


def _executions_table(rows: list[Any]) -> Table:
    table = Table("id", "started", "trigger", "status", "met", "answer / error")
    table.columns[0].no_wrap = True
    for e in rows:
        met = "-" if e.condition_met is None else ("yes" if e.condition_met else "no")
        text = e.error_message if e.status == "failed" else (e.result.answer if e.result else "")
        table.add_row(str(e.id), when(e.started_at), e.trigger, e.status, met, text or "")
    return table


@task_app.command("logs")
def logs(
    task_id: TaskId,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many runs.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """A task's latest runs."""
    with api() as client:
        page = client.tasks.executions_page(task_id, limit=limit)
    emit(page.items) if as_json else out.print(_executions_table(page.items))


@task_app.command("notifications")
def notifications(
    task_id: TaskId,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """A task's runs that met the condition or notified."""
    with api() as client:
        page = client.tasks.notifications_page(task_id, limit=limit)
    emit(page.items) if as_json else out.print(_executions_table(page.items))


@task_app.command("sources")
def sources(
    task_id: TaskId,
    execution_id: Annotated[
        uuid.UUID, typer.Argument(help="The run's id (see task logs).", metavar="EXECUTION_ID")
    ],
    as_json: JsonOption = False,
) -> None:
    """What a run read: each page (and selector) with the hash of its text, and the path of
    its screenshot for pages read with the browser in a task with --screenshot."""
    with api() as client:
        found = client.tasks.sources(task_id, execution_id)
    if as_json:
        emit(found)
        return
    if not found:
        out.print("No sources kept (the run failed, or its snapshots were pruned).")
        return
    table = Table("#", "page", "selector", "sha-256", "screenshot")
    for position, source in enumerate(found):
        table.add_row(
            str(position),
            escape(source.url),
            escape(source.selector or "-"),
            source.content_hash[:12],
            escape(source.screenshot or "-"),
        )
    out.print(table)


@task_app.command("diff")
def diff(
    task_id: TaskId,
    from_: Annotated[
        str | None, typer.Option("--from", help="The earlier execution (default: the one before).")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="The later execution (default: the last).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """What changed between two runs of a task (default: its last two)."""
    with api() as client:
        result = client.tasks.diff(task_id, from_=from_, to=to)
    if as_json:
        emit(result)
        return
    out.print(f"{result.from_execution_id} → {result.to_execution_id}")
    if not result.changed:
        out.print("No change.")
        return
    out.print(result.unified, markup=False, highlight=False)
