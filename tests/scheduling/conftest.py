"""Scheduling tests: a Temporal dev server for the Temporal backend."""

from tests.fixtures.temporal import (  # noqa: F401 - fixtures, registered for this package
    temporal_client,
    temporal_server,
    temporal_task_queue,
)
