"""`torale mcp` before it serves: what it needs (a key, the MCP library) is said, on stderr,
with nothing on stdout (the protocol's). Serving is tested in tests/mcp/test_remote.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def torale_mcp(env: dict[str, str], hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    hiding = f"import sys; sys.modules.update(dict.fromkeys({hide!r}))"
    run = "sys.argv = ['torale', 'mcp']; from torale.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", f"{hiding}; {run}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def base_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    return env | {"HOME": str(tmp_path), "TORALE_CONFIG_FILE": str(tmp_path / "config.json")}


def test_without_the_mcp_library_it_says_what_to_install(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"TORALE_API_KEY": "sk_" + "a" * 43}
    done = torale_mcp(env, hide=("mcp", "mcp_types"))
    assert done.returncode == 1
    assert done.stdout == ""
    assert "`torale mcp` needs the MCP library: pip install 'torale[mcp]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_url_that_cannot_work_is_refused_before_serving(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {
        "TORALE_API_KEY": "sk_" + "a" * 43,
        "TORALE_API_URL": "torale.example.com",
    }
    done = torale_mcp(env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "TORALE_API_URL ('torale.example.com') has no scheme" in done.stderr


def test_the_command_is_listed_with_the_client_commands() -> None:
    from typer.testing import CliRunner

    from torale.cli import app

    listing = CliRunner().invoke(app, ["--help"])
    assert listing.exit_code == 0
    assert "mcp" in listing.stdout
    helped = CliRunner().invoke(app, ["mcp", "--help"])
    assert "Model Context Protocol" in helped.stdout
