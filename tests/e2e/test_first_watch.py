"""The README's first watch, as printed: no model, no key, from a fresh data directory to a
signed webhook carrying the diff (README "Your first watch, with no key at all").

The commands are read from the README's section and run by a shell, in order, with only what
a test must change: free ports for 8000/8001/8002, a temporary folder for /tmp/shop, the key
the server printed, and `torale`/`.venv/bin/python` meaning this checkout run by the test's
interpreter. The fourth terminal's blocks run one after another with the shell's state (the
`page` function, `$TASK`) carried over, as in one terminal.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import Server, StartServer, free_port

ROOT = Path(__file__).resolve().parents[2]
KEY_RE = re.compile(r"sk_[A-Za-z0-9_-]{43}")
SECTION = "### Your first watch, with no key at all"
COMMAND_TIMEOUT = 120


@dataclass
class Section:
    serve: str  # the `make serve` line
    page_server: str
    receiver_py: str
    receiver_start: str
    steps: list[str]  # the fourth terminal's blocks, in order
    receiver_output: str  # what the README says the receiver prints


def readme_section() -> Section:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start)
    blocks = re.findall(r"```(\w+)\n(.*?)```", text[start:end], flags=re.S)
    shells = [body for lang, body in blocks if lang == "sh"]
    (receiver_py,) = [body for lang, body in blocks if lang == "python"]
    (output,) = [body for lang, body in blocks if lang == "text"]
    serve, page_server, receiver_start, *steps = shells
    return Section(serve.strip(), page_server.strip(), receiver_py, receiver_start, steps, output)


@dataclass
class Places:
    server: Server
    key: str
    page_port: int
    receiver_port: int
    shop: Path
    bin_dir: Path

    def adapt(self, command: str) -> str:
        """A README command as it must run here (ports, folder, key, this checkout)."""
        for old, new in (
            ("localhost:8000", f"localhost:{self.server.port}"),
            ("localhost:8001", f"localhost:{self.page_port}"),
            ("localhost:8002", f"localhost:{self.receiver_port}"),
            ('("localhost", 8002)', f'("localhost", {self.receiver_port})'),
            ("/tmp/shop", str(self.shop)),  # noqa: S108 - the README's folder, replaced
            ("8001 --directory", f"{self.page_port} --directory"),
            (". .venv/bin/activate", f'PATH="{self.bin_dir}:$PATH"'),
            (".venv/bin/python", shlex.quote(sys.executable)),
        ):
            command = command.replace(old, new)
        return re.sub(r"sk_3vV…", self.key, command)


def shell_env(home: Path) -> dict[str, str]:
    """A terminal's environment: no TORALE_* setting, no saved CLI config of the developer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    env["TORALE_CONFIG_FILE"] = str(home / "config.json")
    return env


def next_second() -> None:
    """python's http.server dates files to the second: a page written twice within one second
    would be answered 304 (the README's reader types slower than that)."""
    time.sleep(1.01 - time.time() % 1)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Shells started in sessions of their own; stopped with what they started (by group)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited ({proc.returncode})"
        try:
            httpx.get(f"http://localhost:{port}/", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"{what} is not listening on {port}")


def test_the_first_watch_works_as_printed(
    tmp_path: Path, start_server: StartServer, processes: list[subprocess.Popen[bytes]]
) -> None:
    section = readme_section()

    # Terminal 1: `make serve` with the two settings the README gives, on an empty data dir.
    settings = dict(word.split("=", 1) for word in section.serve.split() if "=" in word)
    assert section.serve.endswith("make serve")
    assert settings == {
        "TORALE_ALLOW_PRIVATE_NETWORKS": "true",
        "TORALE_ALLOW_HTTP_WEBHOOKS": "true",
    }
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = start_server(data_dir, settings)
    (key,) = set(KEY_RE.findall(server.stdout))
    # No model: the start says so, and what works without one.
    warning = " ".join(server.stderr.split())
    assert "no model is configured" in warning, server.describe()
    assert "mode change: notify when a page or a part of it changes" in warning
    assert "mode rules" in warning

    bin_dir = tmp_path / "bin"  # `torale` on PATH, as `. .venv/bin/activate` puts it
    bin_dir.mkdir()
    shim = bin_dir / "torale"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m torale "$@"\n')
    shim.chmod(0o755)
    places = Places(server, key, free_port(), free_port(), tmp_path / "shop", bin_dir)
    home = tmp_path / "home"
    home.mkdir()
    env = shell_env(home)

    # Terminal 2: the page server.
    page_server = subprocess.Popen(
        ["bash", "-c", places.adapt(section.page_server)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    processes.append(page_server)

    # Terminal 3: the receiver, started with the secret the API hands out.
    (tmp_path / "receiver.py").write_text(places.adapt(section.receiver_py))
    receiver_out, receiver_err = tmp_path / "receiver.out", tmp_path / "receiver.err"
    with receiver_out.open("wb") as out, receiver_err.open("wb") as err:
        receiver = subprocess.Popen(
            ["bash", "-c", places.adapt(section.receiver_start)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    processes.append(receiver)
    wait_until_listening(places.page_port, page_server, "the page server")
    receiver_url = f"http://localhost:{places.receiver_port}/"
    deadline = time.monotonic() + 60
    while True:
        assert receiver.poll() is None, receiver_err.read_text()
        try:
            forged = httpx.post(receiver_url, content=b"{}", timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the receiver is not listening"
            time.sleep(0.1)
    assert forged.status_code == 401  # it checks signatures: an unsigned POST is refused
    assert receiver_out.read_text() == receiver_err.read_text() == ""

    # Terminal 4: the page, the task, three checks.
    state = tmp_path / "terminal.sh"  # the shell's functions and variables between blocks
    state.write_text("")
    outputs = []
    for block in section.steps:
        next_second()
        script = f". {state}\n{places.adapt(block)}\n" + (
            f"{{ declare -f page; declare -p TASK; export -p | grep -E '^declare -x "
            f"(PATH|TORALE_[A-Z_]+)='; }} > {state}.new; mv {state}.new {state}\n"
        )
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, (block, done.stdout, done.stderr)
        outputs.append(done.stdout)
        time.sleep(1)  # a notification, had one been queued, reaches the receiver meanwhile
        if len(outputs) < len(section.steps):
            assert receiver_out.read_text() == "", "notified before the price changed"

    first, noise_only, changed = outputs
    assert "Condition not met: First check" in first
    assert "Condition not met: No change in the watched content." in noise_only
    page_url = f"http://localhost:{places.page_port}/espresso.html"
    answer = f"The watched content changed (1 line added, 1 removed): {page_url} [#price]"
    assert f"Condition met: {answer}\n" in changed  # the selector shown, not taken for markup

    # The receiver verified the event's signature and printed its answer and data.diff.
    expected = places.adapt(section.receiver_output)
    deadline = time.monotonic() + 30
    while receiver_out.read_text() != expected:
        assert time.monotonic() < deadline, (receiver_out.read_text(), expected)
        time.sleep(0.1)
    # `torale task diff` shows the same diff from the task's history.
    assert expected.split("\n", 1)[1].strip() in changed
    # The delivery is recorded as answered by the receiver (204: verified).
    deliveries = httpx.get(
        f"{server.base_url}/api/v1/webhooks/deliveries",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ).json()["items"]
    assert [(d["success"], d["status_code"], d["channel_type"]) for d in deliveries] == [
        (True, 204, "webhook")
    ]
