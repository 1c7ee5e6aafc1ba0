"""A claimed Apprise delivery, as the dispatcher hands it to the sender, for tests that call
the sender directly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from torale.notify.sending import Outgoing


def apprise_outgoing(url: str) -> Outgoing:
    return Outgoing(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        execution_id=uuid.uuid4(),
        channel_index=0,
        channel_type="apprise",
        channel={"type": "apprise", "url": url},
        payload={
            "data": {
                "task": {"name": "Watch"},
                "execution": {"notification": "it happened"},
                "result": {"answer": "yes"},
            }
        },
        attempt=1,
        lease_until=datetime.now(UTC),
    )
