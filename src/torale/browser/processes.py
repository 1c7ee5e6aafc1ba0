"""The browser's processes, read from /proc: which ones Playwright started, how much memory
they hold, whether the browser still runs, and how to end one that no longer answers.

Playwright does not say which process is its browser. The pool compares this process's
descendants before and after a launch; a hung browser is then killed by its process id
(Playwright's own close waits for the browser to answer). Outside Linux there is no /proc:
the lists are empty and a hung browser is left to Playwright.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

_PROC = Path("/proc")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _parents() -> dict[int, int]:
    """Every visible process, with its parent."""
    parents = {}
    if not _PROC.is_dir():
        return {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name (2nd field) may hold spaces and parentheses: split after it.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> set[int]:
    """The processes below `pid` (children, their children, …)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def children(pid: int) -> set[int]:
    """The processes `pid` started itself."""
    return {child for child, parent in _parents().items() if parent == pid}


def running(pid: int) -> bool:
    """Whether `pid` runs (a process that ended and was not yet reaped does not). True when
    this cannot be known (no /proc)."""
    if not _PROC.is_dir():
        return True
    try:
        state = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def command(pid: int) -> bytes:
    """A process's command line (arguments separated by NUL), or b"" when it is gone."""
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def memory_bytes(pids: set[int]) -> int:
    """Memory these processes hold together (those still running): the sum of their
    proportional set sizes, where a page shared by n processes counts 1/n in each. (Summing
    resident sets would count Chromium's shared pages once per process.) A process whose
    PSS cannot be read counts its resident set."""
    total = 0
    for pid in pids:
        try:
            rollup = (_PROC / str(pid) / "smaps_rollup").read_text()
            kilobytes = next(
                int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")
            )
            total += kilobytes * 1024
            continue
        except (OSError, StopIteration, ValueError, IndexError):
            pass
        try:
            resident = int((_PROC / str(pid) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * _PAGE_SIZE
    return total


def private_bytes(pids: set[int]) -> int:
    """Memory only these processes hold (the sum of their unique set sizes: pages no other
    process maps). Unlike PSS it does not move when unrelated processes that map the same
    libraries start or end, so it is what to watch for a leak."""
    total = 0
    for pid in pids:
        try:
            rollup = (_PROC / str(pid) / "smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def kill(pids: set[int]) -> None:
    """SIGKILL each of these processes that still runs."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
