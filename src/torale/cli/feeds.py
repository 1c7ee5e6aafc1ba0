"""`torale feeds …`: the URLs of your Atom feeds, through the SDK. The feed token is stored as a
hash, so its URLs are shown when it is made (`url` makes one when you have none) and never
again; `rotate` makes new ones (the old ones stop), `off` stops them all."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from rich.markup import escape

from torale.cli.client import JsonOption, api, emit, out, when
from torale.cli.invocation import torale_command
from torale.sdk import FeedTokenCreated

feeds_app = typer.Typer(
    help="Subscribe to your notifications in a feed reader.", no_args_is_help=True
)

TaskOption = Annotated[
    uuid.UUID | None,
    typer.Option("--task", help="Also print this task's own feed URL.", metavar="TASK_ID"),
]


def _show(created: FeedTokenCreated, task_id: uuid.UUID | None) -> None:
    out.print("All your notifications:", escape(created.notifications_url))
    if task_id is not None:
        out.print(f"Task {task_id}:", escape(created.task_url(task_id)))
    else:
        out.print("One task's (fill in its id):", escape(created.task_url_template))
    out.print("Add them to your feed reader now: they are shown only this once.")


@feeds_app.command("url")
def url(task_id: TaskOption = None, as_json: JsonOption = False) -> None:
    """Your feed URLs: made now if you have none; if you have them, how to get new ones."""
    with api() as client:
        current = client.feeds.token()
        created = None if current.active else client.feeds.rotate()
    if created is not None:
        emit(created) if as_json else _show(created, task_id)
        return
    if as_json:
        emit(current)
        return
    out.print(
        f"You have feed URLs (made {when(current.created_at)}). They were shown when they were "
        "made and cannot be shown again (the token is stored as a hash)."
    )
    out.print(
        f"New ones: {escape(torale_command())} feeds rotate (the old URLs stop working at once)."
    )


@feeds_app.command("rotate")
def rotate(task_id: TaskOption = None, as_json: JsonOption = False) -> None:
    """New feed URLs; the old ones stop working at once."""
    with api() as client:
        created = client.feeds.rotate()
    emit(created) if as_json else _show(created, task_id)


@feeds_app.command("off")
def off(as_json: JsonOption = False) -> None:
    """Stop every feed URL (until `rotate` makes new ones)."""
    with api() as client:
        current = client.feeds.turn_off()
    emit(current) if as_json else out.print("Your feeds are off: their URLs answer 404.")
