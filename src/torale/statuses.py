"""The states and statuses kept in string columns, each defined once.

The database stores the values as plain strings (the columns and their CHECK constraints are
unchanged); the ORM gives them back as these enums (`db.types.EnumText`), and the API shows the
same values. Standard library only, so the SDK can use them without the server's dependencies.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"


class PausedReason(StrEnum):
    """Why a task is paused when its owner did not pause it (`tasks.paused_reason`)."""

    ACCOUNT_DEACTIVATED = "account_deactivated"


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    # Allowed by the schema and the API, never written by this version.
    RETRYING = "retrying"
    CANCELLED = "cancelled"


# A task has at most one execution in these (a partial unique index on executions).
ACTIVE_EXECUTION_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


class Trigger(StrEnum):
    """What started an execution."""

    SCHEDULE = "schedule"
    MANUAL = "manual"


class DeliveryStatus(StrEnum):
    """pending → sending (claimed, leased) → delivered | failed; back to pending to retry."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
