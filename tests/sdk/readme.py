"""The README's client examples, and a runner for its shell block.

The shell block starts `torale` about ten times; each start imports the SDK (several seconds),
so the package's conftest starts it in the background at the beginning of the run (when the
test that checks it is selected) and `test_readme` waits for it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
TERMINAL_TEST = "test_the_terminal_example"
TERMINAL_TIMEOUT = 150.0


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(title: str, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(section(title)) if lang == language]


PYTHON_BLOCKS = blocks("Use it from Python", "python")
SHELL_BLOCKS = blocks("Use it from the terminal", "sh")


@dataclass
class TerminalRun:
    """The shell block running with `bash -e -o pipefail` in `workdir`, HOME=`home`."""

    proc: subprocess.Popen[bytes]
    workdir: Path
    home: Path
    api_url: str
    api_key: str

    @property
    def stdout(self) -> str:
        return (self.workdir / "stdout.txt").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.workdir / "stderr.txt").read_text(errors="replace")

    def wait(self, timeout: float = TERMINAL_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_terminal_example(base: Path, api_url: str, api_key: str) -> TerminalRun:
    home, workdir = base / "home", base / "work"
    home.mkdir(parents=True)
    workdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORALE_")}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        HOME=str(home),
        TORALE_API_URL=api_url,
        TORALE_API_KEY=api_key,
        COLUMNS="200",
    )
    with (workdir / "stdout.txt").open("wb") as out, (workdir / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", SHELL_BLOCKS[0]],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    return TerminalRun(proc, workdir, home, api_url, api_key)
