"""`torale worker` builds only what background work needs, none of the API's parts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from torale.db import migrate

# The API's parts and the library only they use. (`torale.ratelimit` is loaded by the
# settings, which check TORALE_RATE_LIMITS in every process: no limiter may be built.)
WEB_MODULES = (
    "torale.app",
    "torale.state",
    "torale.auth.lookup",
    "torale.auth.jwt",
    "torale.auth.usage",
    "torale.tasks.list_cache",
    "torale.tasks.list_fast_path",
    "torale.metrics",
    "torale.middleware",
    "prometheus_client",
)

RUN_WORKER = """
import asyncio, gc, json, sys
from torale.config import Settings
from torale.scheduling import worker

worker._ENGINE_IMPORTS = ()  # seconds of imports this test does not need
settings = Settings(_env_file=None, data_dir=sys.argv[1], database_url=sys.argv[2])
built = []
real = worker.build_services
worker.build_services = lambda *a, **k: built.append(real(*a, **k)) or built[-1]

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    await worker.run_worker(settings, stop)

asyncio.run(main())
limiter = getattr(sys.modules.get("torale.ratelimit"), "RateLimiter", ())
limiters = sum(isinstance(o, limiter) for o in gc.get_objects())
built = [type(b).__name__ for b in built]
print(json.dumps({"built": built, "limiters": limiters, "modules": sorted(sys.modules)}))
"""


def test_the_worker_builds_no_web_part(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'torale.db'}"
    asyncio.run(migrate.upgrade(url))
    result = subprocess.run(
        [sys.executable, "-c", RUN_WORKER, str(tmp_path / "data"), url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ran = json.loads(result.stdout.splitlines()[-1])
    assert ran["built"] == ["Services"]  # it ran, on the background services only
    loaded = {name for name in ran["modules"] if name.startswith(WEB_MODULES)}
    assert not loaded
    assert ran["limiters"] == 0
