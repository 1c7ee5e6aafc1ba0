"""Browser fetcher benchmark: renders per second and memory, next to the plain fetcher.

Run it as `.venv/bin/python bench/browser.py` (or `make bench-browser`; needs Chromium, e.g.
`apt-get install -y chromium`, and Playwright from the `dev` or `browser` extra). It serves one
product page twice from the local fake website of `tests/fakes`: written by a script after
load (`/js`, what needs the browser) and as plain HTML (`/static`, the same text). In one run,
in process, it reads:

- `/static` with the plain fetcher (`torale.engine.fetch.Fetcher`) `--renders` times;
- `/js` with the browser fetcher (`torale.browser.fetcher.BrowserFetcher`) `--renders` times,
  waiting for the network to be idle (what a target without a selector does);
- `/js` with the browser again, with a selector (the render ends when the element is there);

each with `--concurrency` reads at a time (the browser's `TORALE_BROWSER_CONCURRENCY`). It
checks that every read found the same text, and reports reads per second and the resident
memory of this process plus everything it started (Playwright's driver, Chromium and its
renderers): before the browser starts, with the browser idle, at its peak during the renders,
and after them. Results go to the `browser` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))  # for the local fakes in tests/fakes

from tests.fakes import FakeWeb  # noqa: E402

from common import environment as common_environment  # noqa: E402
from common import section_markers, write_section  # noqa: E402
from torale.browser import processes  # noqa: E402
from torale.browser.fetcher import BrowserFetcher  # noqa: E402
from torale.browser.pool import BrowserPool  # noqa: E402
from torale.engine.fetch import Fetcher  # noqa: E402
from torale.net import OutboundPolicy  # noqa: E402

START, END = section_markers("browser")
POLICY = OutboundPolicy(allow_private=True)  # the fake website is on the loopback
ARTICLE = (
    "<article><h1>Helix espresso machine</h1>"
    "<p id='price'>Price: 499 euros, delivered in two days.</p>"
    "<p>Back in stock: the Helix espresso machine ships again from our warehouse.</p>"
    "<p>Every machine is tested before it leaves, and comes with two years of warranty.</p>"
    "</article>"
)
PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Helix espresso machine</title></head>
<body><header><nav><a href="/">Home</a> <a href="/coffee">Coffee</a></nav></header>
<main id="app">{main}</main>{script}</body></html>"""
SCRIPT = """<script>
setTimeout(() => {{ document.getElementById("app").innerHTML = atob("{encoded}"); }}, 20);
</script>"""


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def _tree() -> set[int]:
    me = os.getpid()
    return {me} | processes.descendants(me)


def tree_mb() -> float:
    """Memory of this process and everything below it, in MB: the sum of their proportional
    set sizes (a page shared by n processes counts 1/n in each)."""
    return processes.memory_bytes(_tree()) / 2**20


def tree_rss_mb() -> float:
    """The sum of the same processes' resident sets, in MB (counts shared pages repeatedly)."""
    total = 0
    for pid in _tree():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"VmRSS:\s+(\d+)", status)
        total += int(found.group(1)) if found else 0
    return total / 1024


class PeakSampler:
    """Samples tree_mb() and tree_rss_mb() five times a second in a thread; their peaks."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_mb())
            self.peak_rss = max(self.peak_rss, tree_rss_mb())
            self._stop.wait(0.2)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def busy_cpus() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Phase:
    name: str
    reads: int
    seconds: float
    before: float  # MB, PSS
    peak: float
    after: float
    peak_rss: float  # MB, the resident sets summed
    machine_busy: float  # CPUs busy on the whole machine, on average, during the phase

    @property
    def per_second(self) -> float:
        return self.reads / self.seconds


async def measure(
    name: str, read: object, count: int, concurrency: int, expected: str
) -> tuple[Phase, list[str]]:
    """Run `read()` `count` times, `concurrency` at a time; the phase and any wrong texts."""
    slots = asyncio.Semaphore(concurrency)
    wrong: list[str] = []

    async def one() -> None:
        async with slots:
            text = await read()  # type: ignore[operator]
            if text != expected:
                wrong.append(text)

    before = tree_mb()
    busy0, total0 = busy_cpus()
    with PeakSampler() as sampler:
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        seconds = time.perf_counter() - started
    busy1, total1 = busy_cpus()
    await asyncio.sleep(1.0)  # let closed contexts' renderers end
    cpus = os.cpu_count() or 1
    busy = cpus * (busy1 - busy0) / max(total1 - total0, 1)
    peak = max(sampler.peak, before)
    phase = Phase(name, count, seconds, before, peak, tree_mb(), sampler.peak_rss, busy)
    log(f"{name}: {phase.per_second:.2f}/s, peak {phase.peak:.0f} MB")
    return phase, wrong


async def run(args: argparse.Namespace) -> tuple[list[Phase], dict[str, str]]:
    import base64

    encoded = base64.b64encode(ARTICLE.encode()).decode()
    with FakeWeb() as web:
        web.set_page("/static", PAGE.format(main=ARTICLE, script=""))
        web.set_page("/js", PAGE.format(main="Loading…", script=SCRIPT.format(encoded=encoded)))
        plain = Fetcher(POLICY, timeout=15, max_bytes=2_000_000, max_chars=8_000)
        pool = BrowserPool(executable=args.chromium, concurrency=args.concurrency)
        browser = BrowserFetcher(pool, POLICY, timeout=15, max_bytes=2_000_000, max_chars=8_000)
        info: dict[str, str] = {"load": " / ".join(f"{v:.1f}" for v in os.getloadavg())}
        try:
            expected = (await plain.fetch(web.url + "/static")).text
            if "Back in stock" not in expected:
                raise SystemExit(f"the plain fetcher did not read the static page: {expected!r}")
            # Warm both up: the plain fetcher's first page loads trafilatura.
            before_browser = tree_mb()
            first = await browser.fetch(web.url + "/js")
            if first.text != expected:
                raise SystemExit(f"the browser read {first.text!r}, not {expected!r}")
            lease_browser = pool.browser
            info["chromium"] = lease_browser.version if lease_browser else "?"
            await asyncio.sleep(1.0)
            info["without_browser"] = f"{before_browser:.0f}"
            info["browser_idle"] = f"{tree_mb():.0f}"
            info["browser_idle_rss"] = f"{tree_rss_mb():.0f}"

            async def read_plain() -> str:
                return (await plain.fetch(web.url + "/static")).text

            async def read_idle() -> str:
                return (await browser.fetch(web.url + "/js")).text

            async def read_selector() -> str:
                page = await browser.fetch(web.url + "/js", selector="article")
                return page.text

            phases, wrong = [], []
            for name, read in (
                ("plain fetcher, static page", read_plain),
                ("browser, network idle", read_idle),
                ("browser, selector", read_selector),
            ):
                if name == "browser, selector":
                    # A selector reads the element's text: compare with what it selects.
                    expected_now = (await browser.fetch(web.url + "/js", selector="article")).text
                else:
                    expected_now = expected
                phase, bad = await measure(name, read, args.renders, args.concurrency, expected_now)
                phases.append(phase)
                wrong += bad
            info["launches"] = str(pool.launches)
        finally:
            await plain.close()
            await browser.close()
    if wrong:
        raise SystemExit(f"{len(wrong)} reads found another text, e.g. {wrong[0]!r}")
    return phases, info


def environment(info: dict[str, str]) -> list[tuple[str, str]]:
    browser = ("Browser", f"Chromium {info.get('chromium', '?')} (Debian's), headless")
    return common_environment(("playwright", "httpx", "trafilatura"), [browser])


def render_section(phases: list[Phase], info: dict[str, str], args: argparse.Namespace) -> str:
    plain = phases[0]
    lines = [
        START,
        "## Browser fetcher (`bench/browser.py`)",
        "",
        f"{args.renders} reads per row, {args.concurrency} at a time, of one product page "
        "served by the local fake website: for the plain fetcher as HTML, for the browser "
        "written by a script after load (the same text; every read checked). Memory is that "
        "of the benchmark process and everything it started (Playwright's driver, Chromium "
        "and its renderers) together, sampled five times a second: the sum of their "
        "proportional set sizes (PSS: a page shared by n processes counts 1/n in each). The "
        "sum of their resident sets (RSS), which counts Chromium's shared pages once per "
        "process, is given for the peak.",
        "",
        "| Reader | Reads/s | vs plain | Memory before | peak | after | RSS sum, peak "
        "| Machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in phases:
        ratio = phase.per_second / plain.per_second
        lines.append(
            f"| {phase.name} | {phase.per_second:.2f} | {ratio:.2f} | "
            f"{phase.before:.0f} MB | {phase.peak:.0f} MB | {phase.after:.0f} MB | "
            f"{phase.peak_rss:.0f} MB | {phase.machine_busy:.1f} of {os.cpu_count()} CPUs |"
        )
    lines += [
        "",
        f"- Before the browser started: {info['without_browser']} MB (the process with the "
        f"plain fetcher warmed up); with the browser started and idle: {info['browser_idle']} "
        f"MB (RSS sum {info['browser_idle_rss']} MB). The browser was started "
        f"{info['launches']} time(s).",
        "- A render waits for the network to be idle (500 ms without a request) unless the "
        "target has a selector, which ends it as soon as the element is in the page; every "
        "render also starts a fresh context and tab (a renderer process) and closes it.",
        '- "Machine busy" is every process on the machine, ours or not (from /proc/stat), and '
        f"the load average was {info['load']} when the run started: on a shared machine the "
        "rates are only comparable within one run.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in environment(info)]
    lines += ["", END, ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=100, help="reads per row (100)")
    parser.add_argument("--concurrency", type=int, default=2, help="reads at a time (2)")
    parser.add_argument(
        "--chromium",
        default=os.environ.get("TORALE_TEST_CHROMIUM", shutil.which("chromium") or ""),
        help="the browser to launch (default: chromium on PATH)",
    )
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args()
    if not args.chromium or not Path(args.chromium).exists():
        print("Chromium not found: apt-get install -y chromium (or --chromium PATH)")
        return 2
    logging.basicConfig(level=logging.WARNING)
    phases, info = asyncio.run(run(args))
    section = render_section(phases, info, args)
    print(section)
    if not args.no_write:
        write_section("browser", section)
        log("wrote the browser section of bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
