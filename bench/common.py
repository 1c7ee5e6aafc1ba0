"""What the benchmark scripts share: their results file, free ports, CPU time from /proc, how
busy the machine was."""

from __future__ import annotations

import os
import re
import socket
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
