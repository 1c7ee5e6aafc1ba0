"""What the benchmark scripts share: their results file, free ports, CPU time from /proc, how
busy the machine was."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import re
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RESULTS_FILE = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_HEADER = """\
# Benchmark results

Each benchmark script in `bench/` owns one section of this file and rewrites only that section
(between its `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` markers).
"""


def section_markers(name: str) -> tuple[str, str]:
    """The start and end markers of the section `name` owns in RESULTS.md."""
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def write_section(name: str, section: str) -> None:
    """Replace the section `name` of RESULTS.md with `section` (its markers included)."""
    start, end = section_markers(name)
    text = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else RESULTS_HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS_FILE.write_text(text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_ticks(pid: int, tid: int | None = None) -> int:
    """utime + stime of a process (or of one of its threads), in clock ticks (Linux /proc)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


@dataclass
class Machine:
    """How busy the whole machine was (every process, ours or not), from /proc/stat."""

    busy: int = 0
    total: int = 0

    @staticmethod
    def _now() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values) - idle, sum(values)

    def start(self) -> Machine:
        self.busy, self.total = self._now()
        return self

    def read(self) -> float:
        """CPUs busy on average since start (0 .. number of CPUs)."""
        busy, total = self._now()
        cpus = os.cpu_count() or 1
        return (busy - self.busy) / max(total - self.total, 1) * cpus


def wrk_version() -> str:
    """wrk's own account of its version (the load generator of the HTTP benchmarks)."""
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (wrk.stdout or wrk.stderr).splitlines()[0].split("Copyright")[0].strip()


def environment(
    packages: Sequence[str], extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """What a result was measured on: date, CPU, OS, Python, `extra` rows, package versions and
    the commit (marked when src/ has uncommitted changes)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if match:
            cpu = match.group(1).strip()
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        ("Date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{cpu}, {os.cpu_count()} CPUs"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        *extra,
        ("Packages", ", ".join(versions)),
        ("Torale", f"commit {commit or '?'}" + (" + uncommitted changes in src/" if dirty else "")),
    ]
