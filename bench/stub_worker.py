"""`torale worker` with a stub engine, for bench/scheduler.py (bench-only code).

Run it as `.venv/bin/python bench/stub_worker.py [--io-seconds S]`, configured like
`torale worker` by `TORALE_*` variables (local or Temporal backend). It is the real command
(`torale.cli.server.worker`: schema check, `run_worker`, signal handling) with one change: the
engine's `run_execution`, as the local scheduler and the Temporal activity call it, is replaced
by a stub that measures the scheduler rather than the engine:

- it claims the execution exactly as a real run does (`torale.engine.run._claim`: the pending
  execution becomes running with `started_at` = now and a lease, or, for a Temporal run, a
  running execution is started; it raises AlreadyRunningError the same way), so
  `executions.started_at` is the moment the run began;
- instead of searching, fetching and asking a model, it waits `--io-seconds` (0: returns at
  once; > 0: an I/O-bound run, which keeps the event loop free like a real run waiting on the
  network does);
- it records the outcome in one short transaction (status success, `completed_at`), like
  `_record_success` does, but without verdicts, notifications or page caching.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import update

import torale.scheduling.local as local_backend
import torale.scheduling.temporal.activities as temporal_activities
from torale.cli.server import worker
from torale.db.database import session_scope
from torale.db.models import Execution
from torale.engine.run import Engine, _claim
from torale.statuses import Trigger

_io_seconds = 0.0


async def _finish(engine: Engine, execution_id: uuid.UUID, status: str) -> None:
    now = datetime.now(UTC)
    async with session_scope(engine.sessions, engine.write_lock) as session:
        await session.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.status == "running")
            .values(
                status=status,
                completed_at=now,
                lease_expires_at=None,
                result={"answer": "stub run", "condition_met": False},
                usage={"stub": True},
            )
        )


async def stub_run_execution(
    engine: Engine,
    task_id: uuid.UUID,
    trigger: Trigger,
    *,
    execution_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """`run_execution` with the work between the claim and the record replaced by a wait."""
    claimed = await _claim(engine, task_id, trigger, execution_id)
    if claimed is None:
        return None
    execution_id = claimed.execution_id
    try:
        if _io_seconds > 0:
            await asyncio.sleep(_io_seconds)
    except asyncio.CancelledError:
        await asyncio.shield(_finish(engine, execution_id, "failed"))
        raise
    await _finish(engine, execution_id, "success")
    return execution_id


def main(argv: Sequence[str] | None = None) -> int:
    global _io_seconds
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--io-seconds",
        type=float,
        default=0.0,
        help="How long each stub run waits (asyncio.sleep) between claim and record.",
    )
    args = parser.parse_args(argv)
    _io_seconds = args.io_seconds
    # Both callers look the function up in their own module's globals at call time.
    local_backend.run_execution = stub_run_execution  # type: ignore[attr-defined]
    temporal_activities.run_execution = stub_run_execution  # type: ignore[attr-defined]
    worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
