"""Real `torale` processes: the CLI as a subprocess and `torale serve` on a free port.

Every process started here is stopped in fixture teardown, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0


def clean_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any TORALE_* setting, plus a data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    env["TORALE_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_torale(
    args: list[str], data_dir: Path, extra_env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m torale ARGS` to completion (cwd = data dir, so no stray `.env` is read)."""
    return subprocess.run(
        [sys.executable, "-m", "torale", *args],
        env=clean_env(data_dir, extra_env),
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


@dataclass
class Server:
    """One `torale serve` process; its stdout and stderr go to files in the test's tmp dir."""

    proc: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path
    _closed: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        return (
            f"torale serve on port {self.port} (exit code {self.proc.poll()})\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr[-4000:]}"
        )

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll GET /health until it answers 200; fail with the server's output otherwise."""
        deadline = time.monotonic() + timeout
        last: str = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"the server exited during startup:\n{self.describe()}")
                try:
                    response = client.get(f"{self.base_url}/health")
                except httpx.TransportError as exc:
                    last = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text}"
                time.sleep(0.1)
        pytest.fail(f"/health not 200 after {timeout}s (last: {last}):\n{self.describe()}")

    def stop(self) -> int:
        """SIGTERM, wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        return self.proc.returncode


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Factory: `start_server(data_dir, extra_env={...})` → a healthy `torale serve` process."""
    servers: list[Server] = []

    def start(
        data_dir: Path, extra_env: Mapping[str, str] | None = None, *, wait: bool = True
    ) -> Server:
        port = free_port()
        n = len(servers)
        stdout_path = tmp_path / f"serve-{n}.stdout"
        stderr_path = tmp_path / f"serve-{n}.stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "torale", "serve", "--port", str(port)],
                env=clean_env(data_dir, extra_env),
                cwd=data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        server = Server(proc=proc, port=port, stdout_path=stdout_path, stderr_path=stderr_path)
        servers.append(server)
        if wait:
            server.wait_healthy()
        return server

    yield start
    for server in servers:
        try:
            server.stop()
        except Exception:  # pragma: no cover - last resort, never leave a process behind
            if server.proc.poll() is None:
                server.proc.kill()
