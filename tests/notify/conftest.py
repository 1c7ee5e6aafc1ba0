"""Notification tests: the engine's fakes, a webhook receiver and a watched page."""

from tests.fixtures.engine import (  # noqa: F401 - fixtures, registered for this package
    _fresh_fakes,
    fake_model,
    fake_search,
    fake_web,
)
from tests.fixtures.notify import (  # noqa: F401 - fixtures, registered for this package
    extra_settings,
    newsroom,
    receiver,
    settings_overrides,
)
