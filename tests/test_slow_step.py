"""A step of stopping the process that takes too long names itself in the log."""

from __future__ import annotations

import logging
import time

import pytest

from torale.logs import slow_step


def _fail_slowly() -> None:
    with slow_step("the failing part", seconds=0.05):
        time.sleep(0.1)
        raise RuntimeError("boom")


def test_a_slow_step_is_named_and_a_quick_one_is_not(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="torale.shutdown"):
        with slow_step("the quick part", seconds=5.0):
            pass
        with slow_step("the slow part", seconds=0.05):
            time.sleep(0.1)
        with pytest.raises(RuntimeError):
            _fail_slowly()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("stopping: the slow part took 0.")
    assert messages[1].startswith("stopping: the failing part took 0.")
