"""How to type the `torale` command so that it runs as printed.

`make serve` installs `torale` into `.venv/bin`, which is not on the user's PATH: a bare
`torale …` in a hint would fail with "command not found". Hints the CLI prints (the first-start
banner, "run `torale migrate` first") use `torale_command()` instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def torale_command() -> str:
    """`torale` when that name on PATH is this installation's; otherwise the absolute path of
    the script installed next to this Python (`/…/.venv/bin/torale`); otherwise this Python
    with `-m torale`. Quoted for a POSIX shell."""
    script = Path(sys.executable).parent / "torale"
    if script.is_file():
        on_path = shutil.which("torale")
        if on_path and _same_file(on_path, script):
            return "torale"
        # Not resolved: a virtualenv's python is a symlink, its scripts are not.
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m torale"
