"""Feed tests run against the local fakes (a change-mode task reads a local page)."""

from tests.fixtures.engine import (  # noqa: F401 - fixtures, registered for this package
    _fresh_fakes,
    extra_settings,
    fake_model,
    fake_search,
    fake_web,
    settings_overrides,
)
