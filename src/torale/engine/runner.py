"""Runs asked for through the API (run-now), executed in this process, a bounded number at once.

The execution is written as `pending` before the request answers; this runner then takes it to
the end through `run_execution`. If the process stops first, the lease on the execution runs
out and the next run of the task marks it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from torale.engine.run import Engine, run_execution

logger = logging.getLogger("torale.engine")


class RunQueue:
    def __init__(self, engine: Engine, concurrency: int) -> None:
        self.engine = engine
        self._slots = asyncio.Semaphore(concurrency)
        self._runs: dict[uuid.UUID, asyncio.Task[None]] = {}

    def submit(self, task_id: uuid.UUID, execution_id: uuid.UUID) -> None:
        run = asyncio.create_task(self._run(task_id, execution_id), name=f"run {execution_id}")
        self._runs[execution_id] = run
        run.add_done_callback(lambda _: self._runs.pop(execution_id, None))

    async def _run(self, task_id: uuid.UUID, execution_id: uuid.UUID) -> None:
        async with self._slots:
            try:
                await run_execution(self.engine, task_id, "manual", execution_id=execution_id)
            except Exception:
                logger.exception("run-now of task %s failed", task_id)

    async def wait(self, execution_id: uuid.UUID, within: float) -> bool:
        """Wait for a submitted run to finish; False if it is still going after `within` s."""
        run = self._runs.get(execution_id)
        if run is None:
            return True
        done, _ = await asyncio.wait({run}, timeout=within)
        return bool(done)

    async def close(self) -> None:
        runs = list(self._runs.values())
        for run in runs:
            run.cancel()
        for run in runs:
            with contextlib.suppress(asyncio.CancelledError):
                await run
