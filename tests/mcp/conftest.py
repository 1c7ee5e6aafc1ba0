"""MCP tests: one `torale serve` process with the local fakes, shared by the package (the
in-process tests use the app of tests/conftest.py instead)."""

from tests.fixtures.api_server import (  # noqa: F401 - fixtures, registered for this package
    _no_client_config,
    api,
    fake_model,
    fake_search,
    fake_web,
    fakes,
    make_user,
    user_key,
)
